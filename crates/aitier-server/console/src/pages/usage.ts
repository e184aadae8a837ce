import { getList, usagePath, type Session, type Tenant, type UsageRow } from '../api';
import { color, stackedBar, type Chart } from '../charts';
import { errorText, h, headRow, messages, scroller } from '../dom';
import { num, utcDay } from '../format';

const METRICS = { total_tokens: 'Total tokens', requests: 'Requests', completion_tokens: 'Completion tokens' };
const SPLITS = {
  tenant: { column: 'tenant_id', label: 'Tenant' },
  model: { column: 'model', label: 'Model' },
  key: { column: 'key_id', label: 'API key' },
};
type Metric = keyof typeof METRICS;
type Split = keyof typeof SPLITS;
type Bucket = 'day' | 'hour';

/** Past this many buckets, empty ones are not filled in (the chart would be unreadable anyway). */
const MAX_FILLED_BUCKETS = 1000;
const DAY_MS = 86_400_000;

interface Series {
  label: string;
  data: number[];
  total: number;
}

function select<T extends string>(id: string, options: Record<T, string>, value: T): HTMLSelectElement {
  const el = h('select', { id }, Object.entries<string>(options).map(([v, text]) => h('option', { value: v }, text)));
  el.value = value;
  return el;
}

function field(label: string, control: HTMLInputElement | HTMLSelectElement): HTMLElement {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

/** Every bucket in [from, to], so that quiet days show as gaps rather than vanish. */
function bucketsBetween(from: string, to: string, bucket: Bucket): string[] {
  const step = bucket === 'day' ? DAY_MS : DAY_MS / 24;
  const end = Date.parse(`${to}T00:00:00Z`) + DAY_MS;
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t < end; t += step) {
    if (out.length === MAX_FILLED_BUCKETS) return [];
    out.push(new Date(t).toISOString().slice(0, bucket === 'day' ? 10 : 13));
  }
  return out;
}

function bucketLabel(b: string): string {
  // "2026-12-04T17" → "12-04 17:00"
  return b.length > 10 ? `${b.slice(5, 10)} ${b.slice(11)}:00` : b;
}

function value(row: UsageRow, column: string): number {
  return Number(row[column] ?? 0);
}

/** Sums [bucket, series, value] triples into one array per series, aligned with `buckets`. */
function accumulate(buckets: string[], entries: [string, string, number][]): Series[] {
  const index = new Map(buckets.map((b, i) => [b, i]));
  const series = new Map<string, number[]>();
  for (const [bucket, label, v] of entries) {
    const i = index.get(bucket);
    if (i === undefined) continue;
    let data = series.get(label);
    if (!data) series.set(label, (data = buckets.map(() => 0)));
    data[i] += v;
  }
  return [...series].map(([label, data]) => ({ label, data, total: data.reduce((a, b) => a + b, 0) }));
}

function chartFigure(testid: string, title: string) {
  const canvas = h('canvas', { 'data-testid': testid, role: 'img', 'aria-label': title });
  const summary = h('ul', { class: 'sr-only' });
  const caption = h('figcaption', null, title);
  const figure = h('figure', { class: 'card' }, caption, h('div', { class: 'chart' }, canvas), summary);
  let chart: Chart<'bar', number[], string> | undefined;

  return {
    figure,
    draw(title: string, buckets: string[], series: Series[], colors: (i: number) => string = color) {
      chart ??= stackedBar(canvas);
      chart.data.labels = buckets.map(bucketLabel);
      chart.data.datasets = series.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: colors(i) }));
      chart.update();
      caption.textContent = title;
      const totals = series.map(({ label, total }) => ({ label, total }));
      canvas.dataset.series = JSON.stringify(totals);
      const range = buckets.length ? `, ${bucketLabel(buckets[0])} to ${bucketLabel(buckets[buckets.length - 1])}` : '';
      const parts = totals.map((s) => `${s.label} ${num(s.total)}`);
      canvas.setAttribute('aria-label', `${title}${range}. ${parts.length ? `Totals: ${parts.join('; ')}.` : 'No data.'}`);
      summary.replaceChildren(...totals.map((s) => h('li', null, `${s.label}: ${num(s.total)}`)));
    },
    destroy: () => chart?.destroy(),
  };
}

export function usagePage(view: HTMLElement, session: Session): () => void {
  const admin = session.role === 'admin';
  const splits: Partial<Record<Split, string>> = admin ? { tenant: 'Tenant' } : {};
  splits.model = 'Model';
  splits.key = 'API key';

  const from = h('input', { id: 'from', type: 'date', required: true, value: utcDay(-6) });
  const to = h('input', { id: 'to', type: 'date', required: true, value: utcDay() });
  const bucket = select<Bucket>('bucket', { day: 'Day', hour: 'Hour' }, 'day');
  const split = select('split', splits as Record<Split, string>, admin ? 'tenant' : 'model');
  const metric = select<Metric>('metric', METRICS, 'total_tokens');
  const csv = h('a', { id: 'csv', class: 'button-link' }, 'Download CSV');
  const msg = messages();
  const usageChart = chartFigure('usage-chart', 'Usage');
  const cacheChart = chartFigure('cache-chart', 'Prompt tokens');
  const table = h('table', { id: 'usage-table' });
  let seq = 0;

  const controls = h(
    'form',
    { class: 'controls', 'aria-label': 'Usage filters', onsubmit: (e) => (e.preventDefault(), void refresh()), onchange: () => void refresh() },
    field('From', from),
    field('To', to),
    field('Bucket', bucket),
    field('Split by', split),
    field('Metric', metric),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Refresh'), csv),
  );

  view.append(
    h('h1', { tabindex: -1 }, admin ? 'Usage' : `Usage for ${session.tenant?.name ?? 'your tenant'}`),
    controls,
    msg.alert,
    msg.status,
    h('div', { class: 'charts' }, usageChart.figure, cacheChart.figure),
    scroller(table, 'Usage table'),
  );

  async function refresh(): Promise<void> {
    const mine = ++seq;
    const range = { from: from.value, to: to.value };
    if (!range.from || !range.to || range.from > range.to) {
      msg.error('Choose a From date on or before the To date.');
      return;
    }
    const b = bucket.value as Bucket;
    const s = split.value as Split;
    const m = metric.value as Metric;
    const base = usagePath(session);
    const tableQuery = new URLSearchParams({ ...range, group_by: s, latency: 'true' });
    // The download is the charts' time series, with the table's percentiles.
    const csvQuery = new URLSearchParams({ ...range, group_by: `${b},${s}`, latency: 'true' });
    csv.href = `${base}?${csvQuery}&format=csv`;
    csv.setAttribute('download', `usage-by-${b}-and-${s}-${range.from}-to-${range.to}.csv`);
    msg.say('Loading usage…');
    try {
      const [chartRows, tableRows, names] = await Promise.all([
        getList<UsageRow>(`${base}?${new URLSearchParams({ ...range, group_by: `${b},${s}` })}`),
        getList<UsageRow>(`${base}?${tableQuery}`),
        tenantNames(),
      ]);
      if (mine !== seq) return; // a newer refresh has started; its answer wins
      const column = SPLITS[s].column;
      const nameOf = (row: UsageRow) => {
        const id = row[column];
        return id == null ? '(none)' : s === 'tenant' ? (names.get(String(id)) ?? String(id)) : String(id);
      };
      const buckets = [...new Set([...bucketsBetween(range.from, range.to, b), ...chartRows.map((r) => String(r[b]))])].sort();
      const per = `per ${b} by ${SPLITS[s].label.toLowerCase()}`;
      usageChart.draw(
        `${METRICS[m]} ${per}`,
        buckets,
        accumulate(buckets, chartRows.map((r) => [String(r[b]), nameOf(r), value(r, m)])).sort((x, y) => y.total - x.total),
      );
      cacheChart.draw(
        `Prompt tokens per ${b}: cached and computed`,
        buckets,
        accumulate(
          buckets,
          chartRows.flatMap((r): [string, string, number][] => {
            const cached = value(r, 'cached_tokens');
            return [
              [String(r[b]), 'cached', cached],
              [String(r[b]), 'computed', value(r, 'prompt_tokens') - cached],
            ];
          }),
        ),
        (i) => color(i === 0 ? 2 : 0),
      );
      renderTable(tableRows, nameOf, `${SPLITS[s].label} usage, ${range.from} to ${range.to} (UTC)`, SPLITS[s].label);
      msg.say(`Usage updated: ${tableRows.length} ${tableRows.length === 1 ? 'row' : 'rows'}.`);
    } catch (e) {
      if (mine === seq) msg.error(errorText(e));
    }
  }

  async function tenantNames(): Promise<Map<string, string>> {
    if (!admin) return new Map(session.tenant ? [[session.tenant.id, session.tenant.name]] : []);
    const tenants = await getList<Tenant>('/admin/v1/tenants');
    return new Map(tenants.map((t) => [t.id, t.name]));
  }

  function renderTable(rows: UsageRow[], nameOf: (r: UsageRow) => string, caption: string, nameHeader: string): void {
    const cols = ['requests', 'prompt_tokens', 'cached_tokens', 'completion_tokens', 'total_tokens'];
    const latency = ['ttft_ms_p50', 'ttft_ms_p99', 'latency_ms_p50', 'latency_ms_p99'];
    const sorted = [...rows].sort((a, b) => value(b, 'total_tokens') - value(a, 'total_tokens'));
    const body = sorted.map((r) =>
      h(
        'tr',
        null,
        h('th', { scope: 'row' }, nameOf(r)),
        [...cols, ...latency].map((c) => h('td', { class: 'n' }, num(r[c] == null ? null : Number(r[c])))),
      ),
    );
    table.replaceChildren(
      h('caption', null, caption),
      headRow([nameHeader, 'Requests', 'Prompt tokens', 'Cached', 'Completion', 'Total', 'TTFT p50 (ms)', 'TTFT p99 (ms)', 'Latency p50 (ms)', 'Latency p99 (ms)'], 1),
      h('tbody', null, body.length ? body : h('tr', null, h('td', { colspan: 10, class: 'empty' }, 'No usage in this range.'))),
    );
    table.parentElement?.setAttribute('aria-label', caption);
  }

  void refresh();
  return () => {
    seq++;
    usageChart.destroy();
    cacheChart.destroy();
  };
}
