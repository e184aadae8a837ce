import { api, getList, type EngineStats, type Model } from '../api';
import { errorText, h, headRow, messages, replaceKeepingFocus, scroller } from '../dom';
import { DASH, num, percent } from '../format';

const REFRESH_MS = 5_000;

function statCells(s: EngineStats | null): HTMLTableCellElement[] {
  const cell = (text: string) => h('td', { class: 'n' }, text);
  if (!s) return Array.from({ length: 8 }, () => cell(DASH));
  return [
    cell(num(s.running)),
    cell(num(s.waiting)),
    cell(`${num(s.kv_cells_used)} / ${num(s.kv_cells)} (${percent(s.kv_cells_used, s.kv_cells)})`),
    cell(num(s.prompt_tokens)),
    cell(num(s.prompt_tokens_computed)),
    cell(num(s.generated_tokens)),
    cell(num(s.requests_finished)),
    cell(num(s.requests_cancelled)),
  ];
}

export function modelsPage(view: HTMLElement): () => void {
  const msg = messages();
  let models = h('table', { id: 'models-table' });
  let deployments = h('table', { id: 'deployments-table' });
  let timer: number | undefined;
  let gone = false;

  view.append(
    h('h1', { tabindex: -1 }, 'Models'),
    h('p', { class: 'muted' }, 'Refreshes every 5 seconds.'),
    msg.alert,
    msg.status,
    scroller(models, 'Models'),
    h('h2', null, 'Deployments'),
    scroller(deployments, 'Deployments'),
  );

  async function act(m: Model, action: 'load' | 'unload', button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await api('POST', `/admin/v1/models/${encodeURIComponent(m.id)}/${action}`);
      msg.say(`${action === 'load' ? 'Loading' : 'Unloading'} ${m.id}.`);
    } catch (e) {
      msg.error(errorText(e));
    }
    await refresh();
  }

  function modelRow(m: Model): HTMLTableRowElement {
    const actions = h('div', { class: 'row-actions' });
    // Only local models have weights this gateway can load or drop.
    if (m.kind === 'local' && m.status !== 'loading') {
      const action = m.status === 'loaded' ? 'unload' : 'load';
      const text = action === 'load' ? 'Load' : 'Unload';
      const button: HTMLButtonElement = h('button', { type: 'button', 'aria-label': `${text} ${m.id}`, onclick: () => void act(m, action, button) }, text);
      actions.append(button);
    }
    return h(
      'tr',
      { 'data-model': m.id },
      h('th', { scope: 'row' }, h('strong', null, m.id), m.aliases.length ? h('span', { class: 'aliases' }, `aliases: ${m.aliases.join(', ')}`) : null),
      h('td', null, m.kind),
      h(
        'td',
        null,
        h('span', { class: `badge ${m.status === 'loaded' ? 'on' : m.status === 'loading' ? 'warn' : 'off'}` }, m.status),
        m.error ? h('span', { class: 'why' }, m.error) : null,
      ),
      statCells(m.stats),
      h('td', null, actions),
    );
  }

  function render(list: Model[]): void {
    const fresh = h(
      'table',
      { id: 'models-table' },
      h('caption', null, 'Models'),
      headRow(['Model', 'Kind', 'Status', 'Running', 'Waiting', 'KV cells used / total', 'Prompt tokens', 'Computed prompt tokens', 'Generated tokens', 'Finished', 'Cancelled', 'Actions'], 3, 11),
      h('tbody', null, list.length ? list.map(modelRow) : h('tr', null, h('td', { colspan: 12, class: 'empty' }, 'No models configured.'))),
    );
    replaceKeepingFocus(models, fresh);
    models = fresh;

    const deps = list.flatMap((m) => m.deployments.map((d) => ({ model: m.id, ...d })));
    const freshDeps = h(
      'table',
      { id: 'deployments-table' },
      h('caption', null, 'Deployments'),
      headRow(['Model', 'Deployment', 'Healthy', 'Breaker', 'Outstanding', 'Running', 'Waiting'], 4),
      h(
        'tbody',
        null,
        deps.length
          ? deps.map((d) =>
              h(
                'tr',
                { 'data-deployment': d.name },
                h('td', null, d.model),
                h('th', { scope: 'row' }, d.name),
                h('td', null, h('span', { class: d.healthy ? 'badge on' : 'badge off' }, d.healthy ? 'yes' : 'no')),
                h('td', null, h('span', { class: `badge ${d.breaker === 'closed' ? 'on' : d.breaker === 'open' ? 'off' : 'warn'}` }, d.breaker.replace('_', '-'))),
                h('td', { class: 'n' }, num(d.outstanding)),
                h('td', { class: 'n' }, num(d.stats?.running)),
                h('td', { class: 'n' }, num(d.stats?.waiting)),
              ),
            )
          : h('tr', null, h('td', { colspan: 7, class: 'empty' }, 'No deployments.')),
      ),
    );
    deployments.replaceWith(freshDeps);
    deployments = freshDeps;
  }

  async function refresh(): Promise<void> {
    clearTimeout(timer);
    try {
      const list = await getList<Model>('/admin/v1/models');
      if (!gone) render(list);
    } catch (e) {
      if (!gone) msg.error(errorText(e));
    }
    // Polling a hidden tab wastes the server's time; visibilitychange restarts it.
    clearTimeout(timer); // a refresh started by a click may have finished first
    if (!gone && document.visibilityState === 'visible') timer = window.setTimeout(refresh, REFRESH_MS);
  }

  const onVisibility = () => document.visibilityState === 'visible' && void refresh();
  document.addEventListener('visibilitychange', onVisibility);
  void refresh();

  return () => {
    gone = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  };
}
