export type Child = Node | string | number | null | undefined | false;
type AttrValue = string | number | boolean | null | undefined;
type Attrs = Record<string, AttrValue | ((e: Event) => void)>;

/**
 * Builds an element. Strings become text nodes, so untrusted data can be
 * passed as a child without escaping. `on<event>` attributes take listeners;
 * `false`/`null`/`undefined` attributes are left out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else if (value !== false && value != null) el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== false && child != null) el.append(typeof child === 'number' ? String(child) : child);
  }
  return el;
}

/** An error banner and a polite status line, shared by every page. */
export function messages(): { alert: HTMLElement; status: HTMLElement; error(msg: string): void; say(msg: string): void } {
  const alert = h('div', { class: 'alert', role: 'alert' });
  const status = h('p', { class: 'status', 'aria-live': 'polite' });
  return {
    alert,
    status,
    error: (msg) => (alert.textContent = msg),
    say: (msg) => {
      alert.textContent = '';
      status.textContent = msg;
    },
  };
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Wraps a table so it scrolls sideways on narrow screens instead of the page. */
export function scroller(table: HTMLTableElement, label = table.caption?.textContent ?? 'Table'): HTMLElement {
  // Focusable and labelled so keyboard users can scroll it too.
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': label }, table);
}

/** Column headers; those from index `numericFrom` up to `numericTo` align right over numbers. */
export function headRow(names: string[], numericFrom = names.length, numericTo = names.length): HTMLTableSectionElement {
  const cls = (i: number) => (i >= numericFrom && i < numericTo ? 'n' : null);
  return h('thead', null, h('tr', null, names.map((n, i) => h('th', { scope: 'col', class: cls(i) }, n))));
}

/**
 * Swaps `fresh` in for `old`, moving focus to the matching control so that
 * periodic re-renders do not throw keyboard users back to the top.
 */
export function replaceKeepingFocus(old: Element, fresh: Element): void {
  const active = document.activeElement;
  const label = active && old.contains(active) ? active.getAttribute('aria-label') : null;
  old.replaceWith(fresh);
  if (label) fresh.querySelector<HTMLElement>(`[aria-label="${CSS.escape(label)}"]`)?.focus();
}
