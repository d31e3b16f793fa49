// The console's frame: who is signed in, the navigation, and the hash router. Each page is a
// module loaded when first shown; the URL says the page, the section and the versions compared,
// so that a link can be bookmarked and shared and the back button works.
import { can, currentSession, loadSession, signOut } from "./api.js";
import { h, loading, params, replace, toast } from "./dom.js";

const PAGES = [
  { path: "/", label: "Overview", module: "./pages/overview.js" },
  { path: "/settings", label: "Settings", module: "./pages/settings.js" },
  { path: "/history", label: "History", module: "./pages/history.js" },
  { path: "/env", label: "Environment", module: "./pages/env.js" },
  { path: "/system", label: "System", module: "./pages/system.js" },
  { path: "/init", label: "Initialisation", module: "./pages/init.js" },
  { path: "/notifications", label: "Notifications", module: "./pages/notifications.js", role: "admin" },
  { path: "/audit", label: "Audit log", module: "./pages/audit.js" },
];
const SIGN_IN = { path: "/signin", module: "./pages/signin.js" };

let cleanup = null;
let shown = 0; // which render is current: a slow one that finishes late must not draw over a newer one

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?", 2);
  return { path: path || "/", query: params(query) };
}

function pageFor(path) {
  if (path === SIGN_IN.path) return SIGN_IN;
  const top = `/${path.split("/")[1] || ""}`;
  return PAGES.find((page) => page.path === top) || null;
}

function drawFrame() {
  const session = currentSession();
  const nav = document.getElementById("nav");
  const { path } = parseHash();
  const top = `/${path.split("/")[1] || ""}`;
  replace(nav, session ? PAGES.filter((page) => !page.role || can(page.role)).map((page) => h("a", {
    href: `#${page.path}`, "aria-current": page.path === top ? "page" : null,
  }, page.label)) : []);
  replace(document.getElementById("who"), session ? [
    h("span", { class: "muted", title: `role: ${session.role}` }, `${session.name} · ${session.role}`),
    h("button", { type: "button", class: "link", onclick: async () => {
      await signOut();
      location.hash = "#/signin";
    } }, "Sign out"),
  ] : []);
}

async function route() {
  const ticket = ++shown;
  if (cleanup) { cleanup(); cleanup = null; }
  const { path, query } = parseHash();
  const main = document.getElementById("main");
  if (!currentSession() && path !== SIGN_IN.path) {
    location.replace(`#/signin?next=${encodeURIComponent(location.hash.slice(1) || "/")}`);
    return;
  }
  drawFrame();
  // Busy until the page has what it asked the API for: assistive technology (and the browser
  // tests) know when it is shown, and a slow page says it is loading instead of staying blank.
  main.dataset.route = path;
  main.setAttribute("aria-busy", "true");
  delete main.dataset.failed;
  const page = pageFor(path);
  if (!page) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, `No page at ${path}. `, h("a", { href: "#/" }, "Overview")));
    main.removeAttribute("aria-busy");
    return;
  }
  try {
    const module = await import(page.module);
    if (ticket !== shown) return;
    const view = h("div", { class: "page" }, loading());
    replace(main, view);
    const done = await module.render(view, { path, parts: path.split("/").slice(2), query });
    if (ticket !== shown) { if (done) done(); return; }
    cleanup = done || null;
    const heading = main.querySelector("h1");
    if (heading) { document.title = `${heading.textContent} · apphub`; }
    if (document.activeElement === document.body || !main.contains(document.activeElement)) main.focus();
  } catch (error) {
    if (ticket !== shown) return;
    main.dataset.failed = "true";
    replace(main, h("h1", {}, "Something went wrong"), h("p", { class: "error" }, error.message));
  }
  main.removeAttribute("aria-busy");
}

window.addEventListener("hashchange", route);
// The skip link moves the focus to the page; followed as a link, its #main would be taken for a route.
document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("apphub:signed-out", () => {
  toast("Your session has ended: sign in again.", "error");
  route();
});

loadSession().then(route, (error) => {
  replace(document.getElementById("main"), h("p", { class: "error" }, `apphub does not answer: ${error.message}`));
});
