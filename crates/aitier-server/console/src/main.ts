import './style.css';
import { api, ApiError, setCsrf, whenUnauthorized, type Session } from './api';
import { errorText, h } from './dom';
import { livePage } from './pages/live';
import { modelsPage } from './pages/models';
import { signinPage } from './pages/signin';
import { tenantsPage } from './pages/tenants';
import { usagePage } from './pages/usage';

/** A page draws into `view` and returns what must run when the user leaves it. */
export type Page = (view: HTMLElement, session: Session) => (() => void) | void;

const ROUTES: Record<string, { title: string; admin: boolean; page: Page }> = {
  usage: { title: 'Usage', admin: false, page: usagePage },
  tenants: { title: 'Tenants', admin: true, page: tenantsPage },
  models: { title: 'Models', admin: true, page: modelsPage },
  live: { title: 'Live', admin: true, page: livePage },
};
const DEFAULT_ROUTE = 'usage';

const app = document.getElementById('app')!;
let session: Session | null = null;
let leave: (() => void) | void;

function currentRoute(): string {
  const name = location.hash.replace(/^#\/?/, '');
  return name in ROUTES ? name : DEFAULT_ROUTE;
}

function showSignin(notice = ''): void {
  leave?.();
  leave = undefined;
  session = null;
  setCsrf('');
  document.title = 'Sign in — aitier console';
  signinPage(app, signedIn, notice);
}

function signedIn(s: Session): void {
  session = s;
  setCsrf(s.csrf);
  shell(s);
  route(false);
}

let main: HTMLElement;
let nav: HTMLElement;

function shell(s: Session): void {
  const who = s.role === 'admin' ? 'admin' : `tenant ${s.tenant?.name ?? s.tenant?.id ?? ''}`.trim();
  const links = Object.entries(ROUTES)
    .filter(([, r]) => s.role === 'admin' || !r.admin)
    .map(([name, r]) => h('li', null, h('a', { href: `#/${name}`, 'data-route': name }, r.title)));
  nav = h('nav', { 'aria-label': 'Main' }, h('ul', null, links));
  main = h('main', { id: 'main', tabindex: -1 });
  app.replaceChildren(
    h('a', { class: 'skip', href: '#main', onclick: skipToMain }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: `#/${DEFAULT_ROUTE}` }, 'aitier console'),
      nav,
      h('div', { class: 'who' }, h('span', null, 'Signed in as ', h('strong', null, who)), h('button', { type: 'button', onclick: signOut }, 'Sign out')),
    ),
    main,
  );
}

// The skip link's #main would be taken for a route, so move focus by hand.
function skipToMain(e: Event): void {
  e.preventDefault();
  main.focus();
}

async function signOut(): Promise<void> {
  try {
    await api('DELETE', '/console/session');
  } catch {
    // Signed out either way: an expired session is as good as a deleted one.
  }
  showSignin();
}

function route(moveFocus: boolean): void {
  if (!session) return;
  const name = currentRoute();
  const r = ROUTES[name];
  leave?.();
  leave = undefined;
  document.title = `${r.title} — aitier console`;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = h('div', { class: 'page' });
  main.replaceChildren(view);
  if (r.admin && session.role !== 'admin') {
    view.append(h('h1', { tabindex: -1 }, r.title), h('p', { class: 'alert', role: 'alert' }, 'This page needs the admin token.'));
  } else {
    leave = r.page(view, session);
  }
  // Tell screen-reader users the page changed, without stealing focus on first load.
  if (moveFocus) view.querySelector<HTMLElement>('h1')?.focus();
}

whenUnauthorized(() => {
  if (session) showSignin('Your session has ended. Please sign in again.');
});
window.addEventListener('hashchange', () => route(true));

api<Session>('GET', '/console/session').then(signedIn, (e) =>
  showSignin(e instanceof ApiError && e.status === 401 ? '' : errorText(e)),
);
