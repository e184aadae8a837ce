import { api, getList, type ApiKey, type Limits, type Tenant } from '../api';
import { errorText, h, headRow, messages, scroller } from '../dom';
import { DASH, num, utcDateTime } from '../format';

type Values = Required<Limits> & { name: string };
type NumberKey = 'rpm' | 'tpm' | 'max_concurrent' | 'budget_tokens' | 'weight';

/** Numeric limits and their smallest allowed value. */
const NUMBER_MIN: Record<NumberKey, number> = { rpm: 0, tpm: 0, max_concurrent: 0, budget_tokens: 0, weight: 1 };
const COLUMNS = ['Name', 'Status', 'RPM', 'TPM', 'Max concurrent', 'Budget', 'Weight', 'Models', 'Actions'];

function fieldId(prefix: string, key: string): string {
  return `${prefix}-${key.replace(/_/g, '-')}`;
}

/** What a tenant's limits look like in the form, with "no limit" as null. */
function valuesOf(t: Tenant): Values {
  return {
    name: t.name,
    rpm: t.rpm ?? null,
    tpm: t.tpm ?? null,
    max_concurrent: t.max_concurrent ?? null,
    budget_tokens: t.budget_tokens ?? null,
    budget_period: t.budget_period ?? null,
    weight: t.weight ?? null,
    models: t.models?.length ? t.models : null,
  };
}

/** The tenant form, used both for "New tenant" (prefix "tenant") and for editing. */
function tenantForm(prefix: string, submitText: string, initial: Values | null, onSubmit: (v: Values) => void, extra: Node[] = []) {
  const name = h('input', { id: fieldId(prefix, 'name'), required: true, autocomplete: 'off', value: initial?.name });
  const numbers = Object.fromEntries(
    Object.entries(NUMBER_MIN).map(([key, min]) => [
      key,
      h('input', { id: fieldId(prefix, key), type: 'number', min, step: 1, inputmode: 'numeric', value: initial?.[key as NumberKey] ?? undefined }),
    ]),
  ) as Record<NumberKey, HTMLInputElement>;
  const period = h(
    'select',
    { id: fieldId(prefix, 'budget_period') },
    h('option', { value: '' }, 'none'),
    h('option', { value: 'day' }, 'day'),
    h('option', { value: 'month' }, 'month'),
  );
  period.value = initial?.budget_period ?? '';
  const models = h('input', { id: fieldId(prefix, 'models'), autocomplete: 'off', value: initial?.models?.join(', ') });
  const field = (label: string, control: HTMLElement) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control);

  const read = (): Values => {
    const v = { name: name.value.trim(), budget_period: (period.value || null) as Values['budget_period'] } as Values;
    for (const [key, input] of Object.entries(numbers)) v[key as NumberKey] = input.value === '' ? null : Number(input.value);
    const list = models.value.split(',').map((m) => m.trim()).filter(Boolean);
    v.models = list.length ? list : null;
    return v;
  };

  return h(
    'form',
    { class: 'grid-form', onsubmit: (e) => (e.preventDefault(), onSubmit(read())) },
    field('Name', name),
    field('RPM', numbers.rpm),
    field('TPM', numbers.tpm),
    field('Max concurrent', numbers.max_concurrent),
    field('Budget tokens', numbers.budget_tokens),
    field('Budget period', period),
    field('Weight', numbers.weight),
    h('div', { class: 'field wide' }, h('label', { for: models.id }, 'Models (comma-separated)'), models),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, submitText), extra),
  );
}

/** Only what changed, with null meaning "remove this limit". */
function changes(before: Values, after: Values): Partial<Values> {
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(after) as (keyof Values)[]) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) patch[key] = after[key];
  }
  return patch as Partial<Values>;
}

function withoutNulls(v: Values): Partial<Values> {
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null)) as Partial<Values>;
}

export function tenantsPage(view: HTMLElement): () => void {
  const msg = messages();
  const tbody = h('tbody');
  const table = h('table', { id: 'tenants-table' }, h('caption', null, 'Tenants'), headRow(COLUMNS, 2, 7), tbody);
  /** Per tenant: its row, and the edit/keys rows that may sit under it. */
  const rows = new Map<string, { tenant: Tenant; row: HTMLTableRowElement; edit?: HTMLElement; keys?: HTMLElement }>();
  let gone = false;
  let formSeq = 0;

  const createForm = tenantForm('tenant', 'Create tenant', null, async (v) => {
    try {
      const t = await api<Tenant>('POST', '/admin/v1/tenants', withoutNulls(v));
      createForm.reset();
      add(t);
      msg.say(`Created tenant ${t.name}.`);
    } catch (e) {
      msg.error(errorText(e));
    }
  });

  view.append(
    h('h1', { tabindex: -1 }, 'Tenants and keys'),
    msg.alert,
    msg.status,
    scroller(table),
    h('section', { class: 'card', 'aria-labelledby': 'new-tenant' }, h('h2', { id: 'new-tenant' }, 'New tenant'), createForm),
  );

  function add(t: Tenant): void {
    const row = rowFor(t);
    tbody.querySelector('.empty')?.closest('tr')?.remove();
    tbody.append(row);
    rows.set(t.id, { tenant: t, row });
  }

  function update(t: Tenant, focusAction: string): void {
    const entry = rows.get(t.id)!;
    const row = rowFor(t);
    entry.row.replaceWith(row);
    Object.assign(entry, { tenant: t, row });
    row.querySelector<HTMLElement>(`[data-action=${focusAction}]`)?.focus();
  }

  function rowFor(t: Tenant): HTMLTableRowElement {
    const budget = t.budget_tokens == null ? DASH : `${num(t.budget_tokens)}${t.budget_period ? ` / ${t.budget_period}` : ''}`;
    const button = (action: string, text: string, label: string, onclick: () => void, more = {}) =>
      h('button', { type: 'button', 'data-action': action, 'aria-label': label, onclick, ...more }, text);
    return h(
      'tr',
      { 'data-tenant': t.name },
      h('th', { scope: 'row' }, t.name),
      h('td', null, h('span', { class: t.disabled ? 'badge off' : 'badge on' }, t.disabled ? 'disabled' : 'enabled')),
      [t.rpm, t.tpm, t.max_concurrent].map((n) => h('td', { class: 'n' }, num(n))),
      h('td', { class: 'n' }, budget),
      h('td', { class: 'n' }, num(t.weight)),
      h('td', null, t.models?.length ? t.models.join(', ') : DASH),
      h(
        'td',
        null,
        h(
          'div',
          { class: 'row-actions' },
          button('edit', 'Edit', `Edit ${t.name}`, () => toggleEdit(t.id)),
        button('toggle', t.disabled ? 'Enable' : 'Disable', `${t.disabled ? 'Enable' : 'Disable'} ${t.name}`, () => void setDisabled(t, !t.disabled)),
          button('keys', 'Keys', `Keys for ${t.name}`, () => toggleKeys(t.id), { 'aria-expanded': String(!!rows.get(t.id)?.keys) }),
        ),
      ),
    );
  }

  async function setDisabled(t: Tenant, disabled: boolean): Promise<void> {
    try {
      update(await api<Tenant>('PATCH', `/admin/v1/tenants/${encodeURIComponent(t.id)}`, { disabled }), 'toggle');
      msg.say(`${disabled ? 'Disabled' : 'Enabled'} tenant ${t.name}.`);
    } catch (e) {
      msg.error(errorText(e));
    }
  }

  /** Puts `content` in a full-width row right under the tenant's row (and its edit row). */
  function detailRow(entry: { row: HTMLTableRowElement; edit?: HTMLElement }, content: Node, cls: string): HTMLElement {
    const tr = h('tr', { class: cls }, h('td', { colspan: COLUMNS.length }, content));
    (entry.edit ?? entry.row).after(tr);
    return tr;
  }

  function toggleEdit(id: string): void {
    const entry = rows.get(id)!;
    const editButton = () => entry.row.querySelector<HTMLElement>('[data-action=edit]');
    if (entry.edit) {
      entry.edit.remove();
      entry.edit = undefined;
      editButton()?.focus();
      return;
    }
    const before = valuesOf(entry.tenant);
    const cancel = h('button', { type: 'button', onclick: () => toggleEdit(id) }, 'Cancel');
    const form = tenantForm(`edit${++formSeq}`, 'Save', before, async (after) => {
      const patch = changes(before, after);
      try {
        if (Object.keys(patch).length) {
          update(await api<Tenant>('PATCH', `/admin/v1/tenants/${encodeURIComponent(id)}`, patch), 'edit');
          msg.say(`Saved tenant ${after.name}.`);
        } else msg.say('Nothing changed.');
        toggleEdit(id);
      } catch (e) {
        msg.error(errorText(e));
      }
    }, [cancel]);
    form.setAttribute('aria-label', `Edit ${entry.tenant.name}`);
    entry.edit = detailRow(entry, form, 'detail');
    form.querySelector('input')?.focus();
  }

  function toggleKeys(id: string): void {
    const entry = rows.get(id)!;
    const keysButton = entry.row.querySelector<HTMLElement>('[data-action=keys]');
    const close = (e: { keys?: HTMLElement; row: HTMLTableRowElement }) => {
      e.keys?.remove();
      e.keys = undefined;
      e.row.querySelector('[data-action=keys]')?.setAttribute('aria-expanded', 'false');
    };
    if (entry.keys) return close(entry);
    // One panel at a time keeps the "New key" form's ids unique on the page.
    rows.forEach((e) => e.keys && close(e));
    entry.keys = detailRow(entry, keysPanel(entry.tenant), 'detail');
    keysButton?.setAttribute('aria-expanded', 'true');
  }

  function keysPanel(t: Tenant): HTMLElement {
    const panelMsg = messages();
    const base = `/admin/v1/tenants/${encodeURIComponent(t.id)}/keys`;
    const tbody = h('tbody');
    const created = h('div', { class: 'new-key' });
    const name = h('input', { id: 'key-name', autocomplete: 'off' });
    const form = h(
      'form',
      {
        class: 'inline-form',
        'aria-label': `New key for ${t.name}`,
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const key = await api<ApiKey>('POST', base, name.value.trim() ? { name: name.value.trim() } : {});
            form.reset();
            showNewKey(key);
            await load();
          } catch (err) {
            panelMsg.error(errorText(err));
          }
        },
      },
      h('div', { class: 'field' }, h('label', { for: 'key-name' }, 'Name'), name),
      h('button', { type: 'submit' }, 'Create key'),
    );

    function showNewKey(key: ApiKey): void {
      const code = h('code', { 'data-testid': 'new-key' }, key.key ?? '');
      const copy = async () => {
        try {
          await navigator.clipboard.writeText(code.textContent ?? '');
          panelMsg.say('Key copied to the clipboard.');
        } catch {
          // No clipboard access (e.g. plain http): select it so Ctrl+C works.
          getSelection()?.selectAllChildren(code);
          panelMsg.say('Copying is blocked here; the key is selected, press Ctrl+C to copy it.');
        }
      };
      created.replaceChildren(
        h('p', null, h('strong', null, `New key ${key.id}`), ' for ', t.name, '. This key is shown once.'),
        h('p', { class: 'key-line' }, code, h('button', { type: 'button', 'aria-label': 'Copy new key', onclick: () => void copy() }, 'Copy')),
        h('p', { class: 'muted' }, 'Store it now: it cannot be displayed again.'),
      );
    }

    function keyRow(k: ApiKey): HTMLTableRowElement {
      const cell = h('div', { class: 'row-actions' });
      if (k.revoked_at == null) {
        const revoke = h('button', { type: 'button', 'aria-label': `Revoke key ${k.id}` }, 'Revoke');
        const cancel = h('button', { type: 'button', 'aria-label': `Cancel revoking key ${k.id}` }, 'Cancel');
        let armed = false;
        const disarm = () => {
          armed = false;
          revoke.textContent = 'Revoke';
          revoke.setAttribute('aria-label', `Revoke key ${k.id}`);
          revoke.classList.remove('danger');
          cancel.remove();
        };
        cancel.onclick = () => (disarm(), revoke.focus());
        revoke.onclick = async () => {
          if (!armed) {
            armed = true;
            revoke.textContent = 'Confirm revoke';
            revoke.setAttribute('aria-label', `Confirm revoke key ${k.id}`);
            revoke.classList.add('danger');
            revoke.after(cancel);
            return;
          }
          try {
            await api<ApiKey>('POST', `/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`);
            panelMsg.say(`Revoked key ${k.id}.`);
            await load();
          } catch (e) {
            panelMsg.error(errorText(e));
            disarm();
          }
        };
        cell.append(revoke);
      }
      return h(
        'tr',
        { 'data-key-id': k.id },
        h('th', { scope: 'row' }, h('code', null, k.id)),
        h('td', null, k.name || DASH),
        h('td', null, utcDateTime(k.created_at)),
        h('td', null, k.revoked_at == null ? h('span', { class: 'badge on' }, 'active') : h('span', { class: 'badge off' }, `revoked ${utcDateTime(k.revoked_at)}`)),
        h('td', null, cell),
      );
    }

    async function load(): Promise<void> {
      try {
        const keys = await getList<ApiKey>(base);
        if (gone) return;
        tbody.replaceChildren(...(keys.length ? keys.map(keyRow) : [h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No keys yet.'))]));
      } catch (e) {
        panelMsg.error(errorText(e));
      }
    }

    void load();
    const heading = `Keys for ${t.name}`;
    const keyTable = h('table', null, h('caption', null, heading), headRow(['ID', 'Name', 'Created', 'Status', 'Actions']), tbody);
    return h('section', { class: 'keys-panel', 'aria-label': heading }, panelMsg.alert, panelMsg.status, scroller(keyTable), created, form);
  }

  (async () => {
    try {
      const tenants = await getList<Tenant>('/admin/v1/tenants');
      if (gone) return;
      tenants.forEach(add);
      if (!tenants.length) tbody.append(h('tr', null, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No tenants yet.')));
    } catch (e) {
      msg.error(errorText(e));
    }
  })();

  return () => {
    gone = true;
  };
}
