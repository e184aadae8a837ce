import { api, type Session } from '../api';
import { errorText, h, messages } from '../dom';

/** Renders the sign-in form; `done` receives the new session. */
export function signinPage(view: HTMLElement, done: (s: Session) => void, notice = ''): void {
  const msg = messages();
  const token = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        try {
          const session = await api<Session>('POST', '/console/session', { token: token.value.trim() });
          token.value = '';
          done(session);
        } catch (err) {
          msg.error(errorText(err));
          token.focus();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h1', null, 'aitier console'),
    h('p', { class: 'muted' }, 'Sign in with the admin token to manage the gateway, or with a tenant API key to see that tenant’s usage.'),
    msg.alert,
    h('label', { for: 'token' }, 'Admin token or API key'),
    token,
    submit,
  );
  view.replaceChildren(h('main', { id: 'main', class: 'signin-page' }, form));
  if (notice) msg.error(notice);
  token.focus();
}
