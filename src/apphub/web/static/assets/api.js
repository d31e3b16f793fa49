// The API as the page calls it: the session cookie goes with every request, the CSRF token with
// every write; problems (RFC 9457) become ApiError with their detail and field errors.

let session = null; // {name, role, csrf_token, expires_at}

const RANK = { read: 0, write: 1, admin: 2 };

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.errors = problem.errors || [];
  }
}

export function currentSession() {
  return session;
}

export function can(role) {
  return session !== null && RANK[session.role] >= RANK[role];
}

export async function call(method, path, { body, ifMatch, signal } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (ifMatch) headers["if-match"] = `"${ifMatch}"`;
  if (method !== "GET" && session && session.csrf_token) headers["x-csrf-token"] = session.csrf_token;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin", signal,
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/v1/session") {
      session = null;
      window.dispatchEvent(new CustomEvent("apphub:signed-out"));
    }
    throw new ApiError(response.status, data || {});
  }
  const etag = response.headers.get("etag");
  return { data, etag: etag ? etag.replace(/^W\//, "").replaceAll('"', "") : null, status: response.status };
}

export const get = (path, options) => call("GET", path, options).then((answer) => answer.data);

export async function loadSession() {
  try {
    session = (await call("GET", "/api/v1/session")).data;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    session = null;
  }
  return session;
}

export async function signIn(key) {
  session = (await call("POST", "/api/v1/session", { body: { key } })).data;
  return session;
}

export async function signOut() {
  try { await call("DELETE", "/api/v1/session"); } finally { session = null; }
}
