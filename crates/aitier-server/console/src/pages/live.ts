import { api, type LiveSample } from '../api';
import { liveLine } from '../charts';
import { errorText, h, messages } from '../dom';
import { DASH, duration, num, rate } from '../format';

const POLL_MS = 2_000;
const WINDOW = 60;

export function livePage(view: HTMLElement): () => void {
  const msg = messages();
  const stat = (testid: string) => h('dd', { 'data-testid': testid }, DASH);
  const rps = stat('live-rps');
  const tps = stat('live-tps');
  const gen = stat('live-gen-tps');
  const running = stat('live-running');
  const waiting = stat('live-waiting');
  const uptime = stat('live-uptime');
  const canvas = h('canvas', { role: 'img', 'aria-label': 'Requests and tokens per second, last 2 minutes', 'data-testid': 'live-chart' });
  const tile = (label: string, dd: HTMLElement) => h('div', { class: 'tile' }, h('dt', null, label), dd);

  view.append(
    h('h1', { tabindex: -1 }, 'Live'),
    h('p', { class: 'muted' }, 'Updated every 2 seconds.'),
    msg.alert,
    h(
      'dl',
      { class: 'tiles' },
      tile('Requests/s', rps),
      tile('Tokens/s (prompt + generated)', tps),
      tile('Generated tokens/s', gen),
      tile('Running', running),
      tile('Waiting', waiting),
      tile('Uptime', uptime),
    ),
    h('figure', { class: 'card' }, h('figcaption', null, `Last ${WINDOW} samples`), h('div', { class: 'chart' }, canvas)),
  );

  const chart = liveLine(canvas);
  let prev: LiveSample | undefined;
  let timer: number | undefined;
  let gone = false;

  function record(now: LiveSample): void {
    running.textContent = num(now.running);
    waiting.textContent = num(now.waiting);
    uptime.textContent = duration(now.uptime_s);
    const last = prev;
    prev = now;
    const seconds = last ? (now.ts_ms - last.ts_ms) / 1000 : 0;
    // A restarted server's counters start over; wait for the next pair instead of plotting a negative rate.
    if (!last || seconds <= 0 || now.requests < last.requests) return;
    const r = (now.requests - last.requests) / seconds;
    const g = (now.generated_tokens - last.generated_tokens) / seconds;
    const t = (now.prompt_tokens - last.prompt_tokens) / seconds + g;
    rps.textContent = rate(r);
    tps.textContent = rate(t);
    gen.textContent = rate(g);
    const labels = chart.data.labels!;
    labels.push(new Date(now.ts_ms).toLocaleTimeString('en-GB'));
    chart.data.datasets[0].data.push(r);
    chart.data.datasets[1].data.push(t);
    if (labels.length > WINDOW) {
      labels.shift();
      chart.data.datasets.forEach((d) => d.data.shift());
    }
    chart.update();
  }

  async function tick(): Promise<void> {
    try {
      const sample = await api<LiveSample>('GET', '/admin/v1/live');
      if (gone) return;
      msg.alert.textContent = '';
      record(sample);
    } catch (e) {
      if (gone) return;
      msg.error(errorText(e));
      prev = undefined; // a gap in samples would average the rate over it
    }
    timer = window.setTimeout(tick, POLL_MS);
  }

  void tick();
  return () => {
    gone = true;
    clearTimeout(timer);
    chart.destroy();
  };
}
