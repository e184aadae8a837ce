import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';

// Registering only what the pages use keeps the rest of Chart.js out of the bundle.
Chart.register(BarController, BarElement, LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Tooltip);

// Colour-blind-friendly categorical palette (Okabe–Ito, then Tableau) for stacked series.
const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#4e79a7', '#9c755f', '#79706e', '#b07aa1'];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}

/** Chart.js draws on a canvas, so it cannot follow CSS; hand it the theme's colours. */
function theme(): void {
  const css = getComputedStyle(document.documentElement);
  Chart.defaults.color = css.getPropertyValue('--muted').trim() || '#555';
  Chart.defaults.borderColor = css.getPropertyValue('--grid').trim() || '#ddd';
  Chart.defaults.font.family = css.getPropertyValue('font-family');
}

export function stackedBar(canvas: HTMLCanvasElement): Chart<'bar', number[], string> {
  theme();
  return new Chart(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: {
      locale: 'en-US',
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
      plugins: { legend: { position: 'bottom' }, tooltip: { mode: 'index' } },
    },
  });
}

export function liveLine(canvas: HTMLCanvasElement): Chart<'line', number[], string> {
  theme();
  const series = (label: string, i: number, yAxisID: string) => ({
    label,
    data: [] as number[],
    yAxisID,
    borderColor: color(i),
    backgroundColor: color(i),
    pointRadius: 0,
    borderWidth: 2,
  });
  return new Chart(canvas, {
    type: 'line',
    data: { labels: [], datasets: [series('requests/s', 0, 'y'), series('tokens/s', 1, 'y1')] },
    options: {
      locale: 'en-US',
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      scales: {
        y: { beginAtZero: true, title: { display: true, text: 'requests/s' } },
        // Token rates are orders of magnitude above request rates, so they get their own axis.
        y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, title: { display: true, text: 'tokens/s' } },
      },
      plugins: { legend: { position: 'bottom' } },
    },
  });
}

export type { Chart };
