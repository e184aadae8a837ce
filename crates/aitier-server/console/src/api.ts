export interface Session {
  role: 'admin' | 'tenant';
  csrf: string;
  tenant?: { id: string; name: string };
  key_id?: string;
}

/** Limits shared by tenants and keys; an absent (or null) limit means none. */
export interface Limits {
  models?: string[] | null;
  rpm?: number | null;
  tpm?: number | null;
  max_concurrent?: number | null;
  budget_tokens?: number | null;
  budget_period?: 'day' | 'month' | null;
  weight?: number | null;
}

export interface Tenant extends Limits {
  id: string;
  name: string;
  disabled: boolean;
  created_at: number;
}

export interface ApiKey extends Limits {
  id: string;
  tenant_id: string;
  name?: string | null;
  created_at: number;
  revoked_at: number | null;
  /** Only present in the response that created the key. */
  key?: string;
}

export interface EngineStats {
  running: number;
  waiting: number;
  kv_cells_used: number;
  kv_cells: number;
  prompt_tokens: number;
  prompt_tokens_computed: number;
  generated_tokens: number;
  requests_finished: number;
  requests_cancelled: number;
}

export interface Deployment {
  name: string;
  healthy: boolean;
  breaker: 'closed' | 'half_open' | 'open';
  outstanding: number;
  stats: EngineStats | null;
}

export interface Model {
  id: string;
  aliases: string[];
  status: 'loaded' | 'loading' | 'unloaded' | 'failed';
  /** Why it failed to load. */
  error?: string;
  kind: 'local' | 'upstream' | 'routed';
  stats: EngineStats | null;
  deployments: Deployment[];
}

export interface LiveSample {
  ts_ms: number;
  uptime_s: number;
  requests: number;
  prompt_tokens: number;
  generated_tokens: number;
  running: number;
  waiting: number;
}

export type UsageRow = Record<string, string | number | null | undefined>;

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

let csrf = '';
let onUnauthorized = (): void => {};

export function setCsrf(token: string): void {
  csrf = token;
}

/** Called when the session has gone away (expired, signed out elsewhere). */
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

const SESSION = '/console/session';

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError('The server could not be reached.', 0);
  }
  // The session endpoint's own 401s (wrong token, not signed in) are answers, not expiry.
  if (res.status === 401 && path !== SESSION) onUnauthorized();
  if (!res.ok) throw new ApiError(await errorMessage(res), res.status);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

async function errorMessage(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body.error?.message) return body.error.message;
  } catch {
    // Not JSON (e.g. a proxy's HTML page); fall back to the status line.
  }
  return `Request failed: ${res.status} ${res.statusText}`.trim();
}

/** Accepts both a bare array and the OpenAI-style `{"object":"list","data":[...]}`. */
export function list<T>(body: T[] | { data: T[] }): T[] {
  return Array.isArray(body) ? body : body.data;
}

export function getList<T>(path: string): Promise<T[]> {
  return api<T[] | { data: T[] }>('GET', path).then(list);
}

export function usagePath(session: Session): string {
  return session.role === 'admin' ? '/admin/v1/usage' : '/v1/usage';
}
