// The few DOM helpers every page uses: build elements, format times and versions.

export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const short = (version) => (version ? version.slice(0, 8) : "—");

export function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const seconds = Math.round((Date.now() - at.getTime()) / 1000);
  const ago = seconds < 60 ? `${Math.max(seconds, 0)} s ago` : seconds < 3600 ? `${Math.round(seconds / 60)} min ago`
    : seconds < 86400 ? `${Math.round(seconds / 3600)} h ago` : at.toLocaleDateString();
  return h("time", { datetime: iso, title: at.toLocaleString() }, ago);
}

export function ms(value) {
  if (value === undefined || value === null) return "—";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}

export const STATE_LABELS = {
  applied: "applied", applying: "applying", failed: "failed, running the previous version",
  interrupted: "interrupted", drifted: "drifted", unknown: "unknown", refused: "refused",
  healthy: "healthy", down: "down", degraded: "degraded", pending: "pending",
};

export function badge(state, label) {
  return h("span", { class: `badge badge-${state || "unknown"}` }, label || STATE_LABELS[state] || state || "unknown");
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 4000);
}

// A query string of a hash route (#/history?key=a.b) as an object, and back.
export function params(query) {
  return Object.fromEntries(new URLSearchParams(query || ""));
}

export function routeWith(path, values) {
  const query = new URLSearchParams(Object.entries(values).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

export function loading(text = "Loading…") {
  return h("p", { class: "muted", "aria-busy": "true" }, text);
}

export function problemText(error) {
  if (!error) return "";
  return error.message || String(error);
}
