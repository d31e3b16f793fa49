// Unified diffs shown two ways: as they are, and side by side. A large diff is drawn in pieces:
// the first lines at once, then a button that says how many lines are left (never hidden silently).
import { h, replace } from "./dom.js";

const FIRST_LINES = 400;
const MORE_LINES = 2000;

// A hunk's header says how many lines it holds: within them, a line is the file's own, even a
// removed "-- note" or an added "++x" (which read "--- note" and "+++x", like the file headers).
function parse(text) {
  const lines = [];
  let old = 0;
  let now = 0;
  let oldLeft = 0;
  let nowLeft = 0;
  for (const line of text.split("\n")) {
    if (line === "" && oldLeft === 0 && nowLeft === 0) continue;
    const inHunk = oldLeft > 0 || nowLeft > 0;
    if (!inHunk && (line.startsWith("---") || line.startsWith("+++"))) { lines.push({ kind: "file", text: line }); continue; }
    const hunk = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
    if (!inHunk && hunk) {
      old = Number(hunk[1]);
      now = Number(hunk[3]);
      oldLeft = hunk[2] === undefined ? 1 : Number(hunk[2]);
      nowLeft = hunk[4] === undefined ? 1 : Number(hunk[4]);
      lines.push({ kind: "hunk", text: line });
      continue;
    }
    if (line.startsWith("\\")) {
      lines.push({ kind: "note", text: line });
    } else if (line.startsWith("-")) {
      lines.push({ kind: "del", text: line.slice(1), old: old++ });
      oldLeft = Math.max(0, oldLeft - 1);
    } else if (line.startsWith("+")) {
      lines.push({ kind: "add", text: line.slice(1), now: now++ });
      nowLeft = Math.max(0, nowLeft - 1);
    } else {
      lines.push({ kind: "same", text: line.slice(1), old: old++, now: now++ });
      oldLeft = Math.max(0, oldLeft - 1);
      nowLeft = Math.max(0, nowLeft - 1);
    }
  }
  return lines;
}

// Pairs of (left, right) rows: a run of deleted lines beside the run of added lines after it.
function sideBySide(lines) {
  const rows = [];
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.kind === "file" && lines[i + 1]?.kind === "file") { // "--- old" on the left, "+++ new" on the right
      rows.push([line, lines[i + 1]]);
      i += 2;
    } else if (line.kind === "del" || line.kind === "add") {
      const dels = [];
      const adds = [];
      while (i < lines.length && lines[i].kind === "del") dels.push(lines[i++]);
      while (i < lines.length && lines[i].kind === "add") adds.push(lines[i++]);
      for (let j = 0; j < Math.max(dels.length, adds.length); j++) rows.push([dels[j] || null, adds[j] || null]);
    } else {
      rows.push([line, line]);
      i++;
    }
  }
  return rows;
}

function cell(line, side) {
  if (line === null) return [h("td", { class: "num" }), h("td", { class: "code empty" })];
  if (line.kind === "file" || line.kind === "hunk" || line.kind === "note") {
    return [h("td", { class: "num" }), h("td", { class: `code ${line.kind}` }, line.text)];
  }
  const number = side === "old" ? line.old : line.now;
  const kind = line.kind === "same" ? "same" : line.kind;
  return [h("td", { class: "num" }, number ?? ""), h("td", { class: `code ${kind}` }, line.text)];
}

function unifiedRow(line) {
  const sign = { del: "-", add: "+", same: " " }[line.kind] || "";
  return h("tr", {}, h("td", { class: "num" }, line.old ?? ""), h("td", { class: "num" }, line.now ?? ""),
    h("td", { class: `code ${line.kind}` }, line.kind === "file" || line.kind === "hunk" || line.kind === "note"
      ? line.text : `${sign}${line.text}`));
}

export function diffView(text, { mode = "split", label = "" } = {}) {
  if (!text) return h("p", { class: "muted small" }, "No difference.");
  const lines = parse(text);
  const rows = mode === "split" ? sideBySide(lines) : lines;
  const body = h("tbody");
  const footer = h("div");
  let drawn = 0;
  function more(count) {
    const end = Math.min(rows.length, drawn + count);
    const part = rows.slice(drawn, end).map((row) => mode === "split"
      ? h("tr", {}, cell(row[0], "old"), cell(row[1], "now")) : unifiedRow(row));
    body.append(...part);
    drawn = end;
    const left = rows.length - drawn;
    replace(footer, left > 0 ? h("button", { type: "button", class: "more", onclick: () => more(MORE_LINES) },
      `Show ${Math.min(left, MORE_LINES)} more lines (${left} not shown yet)`) : null);
  }
  more(FIRST_LINES);
  return h("div", { class: "diff", "aria-label": label || null },
    h("div", { class: "scroll" }, h("table", { class: `diff-table diff-${mode}` }, body)), footer);
}

// A diff with a switch between side by side and unified; the choice is kept for the session.
export function switchableDiff(text, label) {
  const holder = h("div");
  const stored = sessionStorage.getItem("apphub.diff") || "split";
  const select = h("select", { "aria-label": "Diff layout", onchange: () => {
    sessionStorage.setItem("apphub.diff", select.value);
    replace(area, diffView(text, { mode: select.value, label }));
  } }, h("option", { value: "split", selected: stored === "split" }, "side by side"),
  h("option", { value: "unified", selected: stored === "unified" }, "unified"));
  const area = h("div", {}, diffView(text, { mode: stored, label }));
  replace(holder, h("div", { class: "diff-tools" }, select), area);
  return holder;
}
