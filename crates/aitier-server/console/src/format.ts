// The UI text is English, so numbers follow one fixed locale rather than the browser's.
const LOCALE = 'en-US';
const int = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });

export const DASH = '—';

export function num(n: number | null | undefined): string {
  return n == null ? DASH : int.format(n);
}

export function rate(n: number): string {
  return n.toLocaleString(LOCALE, { maximumFractionDigits: n < 10 ? 2 : n < 100 ? 1 : 0 });
}

export function percent(part: number, whole: number): string {
  return whole > 0 ? (part / whole).toLocaleString(LOCALE, { style: 'percent', maximumFractionDigits: 1 }) : DASH;
}

/** Usage buckets are UTC, so every date on the console is shown in UTC too. */
export function utcDateTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function utcDay(offsetDays = 0): string {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

export function duration(seconds: number): string {
  let s = Math.floor(seconds);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3_600], ['m', 60]] as const) {
    if (s >= size || parts.length) parts.push(`${Math.floor(s / size)}${unit}`);
    s %= size;
  }
  parts.push(`${s}s`);
  return parts.join(' ');
}
