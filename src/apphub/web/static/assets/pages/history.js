// History: the versions with who, where from, why and what changed, filtered by key, author and
// time; any two compared in three layers (keys, each service's files, what each would do); and
// a rollback in one click, after a confirmation that shows its plan, followed live to the end.
import { call, can, get } from "../api.js";
import { h, replace, routeWith, short, toast, when } from "../dom.js";
import { changesTable } from "../changes.js";
import { switchableDiff } from "../diff.js";
import { followVersion, planView } from "../plan.js";

const PAGE = 50;
const FILTERS = ["key", "author", "source", "since", "until", "file"];

function historyQuery(query, cursor) {
  const found = new URLSearchParams({ limit: String(PAGE) });
  const file = query.file || "config.ini";
  found.set("file", file);
  if (query.key) {
    const [section, key] = query.key.split(/\.(.*)/s);
    found.set("section", section);
    if (key) found.set("key", key);
  }
  for (const name of ["author", "source"]) if (query[name]) found.set(name, query[name]);
  for (const name of ["since", "until"]) if (query[name]) found.set(name, new Date(query[name]).toISOString());
  if (cursor) found.set("cursor", String(cursor));
  return `/api/v1/settings/history?${found}`;
}

export async function render(view, { parts, query }) {
  if (parts[0] === "compare") return compare(view, query);
  return list(view, query);
}

function filterForm(query) {
  const field = (name, label, type = "text", placeholder = "") => h("label", { class: "filter" }, label,
    h("input", { name, type, value: query[name] || "", placeholder }));
  return h("form", { class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(event.target));
    location.hash = routeWith("/history", values);
  } },
  field("key", "Key", "text", "section or section.key"),
  field("author", "Author", "text", "a key's name, cli, file"),
  field("source", "Source", "text", "api, console, cli, rollback…"),
  field("since", "Since", "datetime-local"),
  field("until", "Until", "datetime-local"),
  h("label", { class: "filter" }, "File", h("select", { name: "file" }, ["config.ini", "env.ini", "system.ini"].map((file) =>
    h("option", { value: file, selected: (query.file || "config.ini") === file }, file)))),
  h("button", { type: "submit" }, "Filter"),
  FILTERS.some((name) => query[name]) ? h("a", { href: "#/history" }, "Clear") : null);
}

// The files a rollback may bring back over the API, and where their current version is read.
const ROLLBACK_FILES = { "config.ini": "/api/v1/settings", "env.ini": "/api/v1/env" };

async function list(view, query) {
  const file = query.file || "config.ini";
  // the version the file is at: its row says so, and offers no rollback to itself
  const current = ROLLBACK_FILES[file] ? (await get(ROLLBACK_FILES[file])).version : null;
  const chosen = [];
  const compareLink = h("a", { class: "button", "aria-disabled": "true", "data-action": "compare" }, "Compare the two selected");
  const body = h("tbody");
  const more = h("div");
  replace(view, h("h1", {}, "History"), filterForm(query),
    h("p", { class: "muted" }, "Select two versions to compare them, or compare one with the current version."),
    h("div", { class: "actions" }, compareLink),
    h("div", { class: "scroll" }, h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["", "When", "Author", "Source", "What changed", "Version", ""].map((t) => h("th", { scope: "col" }, t)))),
      body)), more);

  function updateCompare() {
    if (chosen.length === 2) {
      const [newer, older] = [...chosen].sort((a, b) => b.at.localeCompare(a.at));
      compareLink.href = routeWith("/history/compare", { from: older.version, to: newer.version, file });
      compareLink.removeAttribute("aria-disabled");
    } else {
      compareLink.removeAttribute("href");
      compareLink.setAttribute("aria-disabled", "true");
    }
  }

  function row(entry) {
    const box = h("input", { type: "checkbox", "aria-label": `select version ${short(entry.version)}`, onchange: () => {
      if (box.checked) { chosen.push(entry); if (chosen.length > 2) { const dropped = chosen.shift(); dropped.box.checked = false; } }
      else chosen.splice(chosen.indexOf(entry), 1);
      updateCompare();
    } });
    entry.box = box;
    const keys = entry.changes.filter((c) => c.file === file || !c.file);
    const version = entry.file === file ? entry.file_version || entry.version : entry.version;
    return h("tr", { "data-commit": entry.commit, "data-version": version },
      h("td", {}, box), h("td", {}, when(entry.at)), h("td", {}, entry.author), h("td", {}, entry.source),
      h("td", {}, entry.message || "", keys.length ? h("div", { class: "small muted" },
        keys.slice(0, 6).map((c) => `${c.section}${c.key ? `.${c.key}` : ""}`).join(", "),
        keys.length > 6 ? ` and ${keys.length - 6} more` : "") : null),
      h("td", {}, h("code", { title: version }, short(version))),
      h("td", {}, version === current ? h("span", { class: "badge badge-applied", "data-current": "true" }, "current")
        : h("div", { class: "row-actions" },
          h("a", { href: routeWith("/history/compare", { from: version, file }) }, "Compare with now"),
          can("write") && ROLLBACK_FILES[file]
            ? h("button", { type: "button", "data-action": "rollback", onclick: () => confirmRollback(version, file, entry) }, "Roll back to this")
            : null)));
  }

  async function page(cursor) {
    const answer = await get(historyQuery(query, cursor));
    body.append(...answer.entries.map(row));
    replace(more, answer.next_cursor ? h("button", { type: "button", onclick: () => page(answer.next_cursor) }, "Older versions")
      : h("p", { class: "muted small" }, body.children.length ? "That is the first version." : "No version matches."));
  }
  await page(null);
  return undefined;
}

async function compare(view, query) {
  const file = query.file || "config.ini";
  const parameters = new URLSearchParams({ from: query.from || "", file });
  if (query.to) parameters.set("to", query.to);
  if (file === "config.ini") parameters.set("services", "true");
  replace(view, h("h1", {}, "Compare versions"), h("p", { class: "muted" }, "Loading…"));
  const diff = await get(`/api/v1/settings/diff?${parameters}`);
  const label = (side) => side.version ? h("code", { title: side.version }, short(side.version)) : "now";
  replace(view,
    h("h1", {}, "Compare versions"),
    h("p", {}, file, ": ", label(diff.from), " → ", diff.to.commit ? label(diff.to) : h("span", {}, label(diff.to), " (current)"),
      " ", h("a", { href: routeWith("/history/compare", { from: query.to || diff.to.version, to: query.from, file }) }, "swap")),
    diff.equal ? h("p", { class: "ok" }, "The two versions are the same.") : null,
    h("section", { "aria-labelledby": "keys-layer" }, h("h2", { id: "keys-layer" }, "Keys"), changesTable(diff.changes)),
    h("section", { "aria-labelledby": "file-layer" }, h("h2", { id: "file-layer" }, file), switchableDiff(diff.unified, file)),
    diff.services !== undefined ? h("section", { "aria-labelledby": "services-layer" },
      h("h2", { id: "services-layer" }, "Each service's files and what it would do"),
      planView(diff.services, { title: `Going from ${short(diff.from.version)} to ${short(diff.to.version)}` })) : null,
    can("write") && ROLLBACK_FILES[file] && diff.from.version
      ? h("div", { class: "actions" }, h("button", { type: "button", class: "danger", "data-action": "rollback",
        onclick: () => confirmRollback(diff.from.version, file, null) }, `Roll back to ${short(diff.from.version)}`)) : null);
  return undefined;
}

async function confirmRollback(version, file, entry) {
  const content = h("div", { class: "dialog-body" }, h("p", { class: "muted" }, "Planning the rollback…"));
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "rollback-title" },
    h("h2", { id: "rollback-title" }, `Roll ${file} back to ${short(version)}?`), content);
  let stopFollowing = null;
  let rolledBack = false;
  document.body.append(dialog);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (stopFollowing) stopFollowing();
    // The page behind was drawn before the rollback: drawn again, it lists the version it made.
    if (rolledBack) window.dispatchEvent(new HashChangeEvent("hashchange"));
  });
  dialog.showModal();
  let plan;
  try {
    plan = (await call("POST", "/api/v1/settings/rollback/plan", { body: { version, file } })).data;
  } catch (error) {
    replace(content, h("p", { class: "error" }, error.message), h("button", { type: "button", "data-action": "close-dialog", onclick: () => dialog.close() }, "Close"));
    return;
  }
  const services = plan.services && plan.services.services ? plan.services.services.filter((s) => s.changed).map((s) => s.service) : [];
  const go = h("button", { type: "button", class: "danger", "data-action": "confirm-rollback", disabled: !plan.valid, onclick: async () => {
    go.disabled = true;
    try {
      const answer = await call("POST", "/api/v1/settings/rollback", { body: { version, file } });
      const now = answer.etag || answer.data.version;
      rolledBack = true;
      toast(`Rolled back: ${file} is at version ${short(now)}.`);
      const progress = h("div", { class: "card" });
      replace(content, progress, h("button", { type: "button", "data-action": "close-dialog", onclick: () => dialog.close() }, "Close"));
      stopFollowing = followVersion(now, file === "config.ini" ? services : [], progress, (states) => {
        const failed = [...states].filter(([, s]) => s.state !== "applied");
        progress.append(h("p", { class: failed.length ? "error" : "ok", "data-outcome": failed.length ? "failed" : "applied" },
          failed.length ? `${failed.map(([n]) => n).join(", ")} did not take it and run their previous files again.`
            : "Every service runs the version rolled back to."));
      });
    } catch (error) {
      go.disabled = false;
      replace(content.querySelector(".rollback-error") || content.appendChild(h("p", { class: "rollback-error error" })), error.message);
    }
  } }, "Roll back");
  replace(content,
    entry ? h("p", {}, `Made ${new Date(entry.at).toLocaleString()} by ${entry.author} (${entry.source})${entry.message ? `: ${entry.message}` : ""}.`) : null,
    plan.valid ? null : h("div", { class: "alert alert-error" }, "That version no longer passes today's rules: ",
      plan.problems.map((p) => p.text).join("; ")),
    plan.warnings.length ? h("ul", {}, plan.warnings.map((w) => h("li", { class: "warning" }, w.text))) : null,
    changesTable(plan.changes, { caption: "The keys it brings back" }),
    plan.services ? planView(plan.services) : null,
    plan.notes.length ? h("ul", { class: "muted" }, plan.notes.map((n) => h("li", {}, n))) : null,
    h("div", { class: "actions" }, go, h("button", { type: "button", "data-action": "close-dialog", onclick: () => dialog.close() }, "Cancel")));
  go.focus();
}
