// The API as the page calls it: the session cookie and the session's token go with every request;
// problems (RFC 9457) become ApiError with their detail and field errors.
//
// The token is kept in this origin's storage: the cookie alone opens nothing (a browser sends it to
// every port of the host name, so to the other web apps there), and a page loaded again, or opened
// in another tab, finds the token of the last sign-in there.

let session = null; // {name, role, csrf_token, expires_at}
const TOKEN = "apphub.session-token";

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

function keep(answer) {
  session = answer;
  if (answer && answer.csrf_token) localStorage.setItem(TOKEN, answer.csrf_token);
  return session;
}

function forget() {
  session = null;
  localStorage.removeItem(TOKEN);
}

// The status stream's address: an EventSource sends no header, so the token goes in its query.
export function streamUrl(path) {
  const token = localStorage.getItem(TOKEN);
  return token ? `${path}?csrf_token=${encodeURIComponent(token)}` : path;
}

export async function call(method, path, { body, ifMatch, signal } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (ifMatch) headers["if-match"] = `"${ifMatch}"`;
  const token = localStorage.getItem(TOKEN);
  if (token) headers["x-csrf-token"] = token;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin", signal,
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/v1/session") {
      forget();
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
    keep((await call("GET", "/api/v1/session")).data);
  } catch (error) {
    // 401: no session; 403: a cookie without this page's token (signed in elsewhere): sign in here.
    if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 403)) throw error;
    forget();
  }
  return session;
}

export async function signIn(key) {
  return keep((await call("POST", "/api/v1/session", { body: { key } })).data);
}

export async function signOut() {
  try { await call("DELETE", "/api/v1/session"); } finally { forget(); }
}
