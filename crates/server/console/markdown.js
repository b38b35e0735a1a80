// A small Markdown renderer for documents written by models: headings,
// paragraphs, lists, block quotes, code, emphasis, links and tables. It
// builds DOM nodes directly, and every piece of source text becomes a text
// node, so no input can produce markup; links keep only safe schemes.

import { h } from "./dom.js";

/** Schemes a rendered link may use; anything else is shown as text. */
const SAFE_LINK = /^(https?:\/\/|mailto:|#|\/(?!\/)|\.\.?\/)/i;

/** `text` (Markdown) as a fragment of DOM nodes. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i += 1;
      continue;
    }
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      const code = h("code", fence[2] ? { "data-lang": fence[2] } : {}, body.join("\n"));
      fragment.append(h("pre", {}, code));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      fragment.append(h(`h${heading[1].length}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      fragment.append(h("hr"));
      i += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) {
        quoted.push(lines[i].replace(/^\s*>\s?/, ""));
        i += 1;
      }
      fragment.append(h("blockquote", {}, renderMarkdown(quoted.join("\n"))));
      continue;
    }
    if (isTableStart(lines, i)) {
      i = table(lines, i, fragment);
      continue;
    }
    if (listItem(line)) {
      i = list(lines, i, fragment);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines, i)) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    fragment.append(h("p", {}, inline(paragraph.join(" "))));
  }
  return fragment;
}

function startsBlock(lines, i) {
  const line = lines[i];
  return (
    /^\s*(```|~~~)/.test(line) ||
    /^#{1,6}\s/.test(line) ||
    /^\s*>/.test(line) ||
    listItem(line) !== null ||
    isTableStart(lines, i)
  );
}

/** `{ordered, indent, content}` for a list item line, else null. */
function listItem(line) {
  const match = line.match(/^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/);
  if (!match) return null;
  return { ordered: /\d/.test(match[2]), indent: match[1].length, content: match[3] };
}

/** A list starting at line `i`, nested by indentation; returns the next line. */
function list(lines, i, parent) {
  const first = listItem(lines[i]);
  const el = h(first.ordered ? "ol" : "ul");
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      const next = lines[i + 1];
      if (next !== undefined && listItem(next) && listItem(next).indent >= first.indent) {
        i += 1;
        continue;
      }
      break;
    }
    const found = listItem(line);
    if (found && found.indent > first.indent && item) {
      i = list(lines, i, item);
      continue;
    }
    if (found && found.indent === first.indent && found.ordered === first.ordered) {
      item = h("li", {}, inline(found.content));
      el.append(item);
      i += 1;
      continue;
    }
    if (!found && item && /^\s+\S/.test(line) && !startsBlock(lines, i)) {
      item.append(" ", inline(line.trim()));
      i += 1;
      continue;
    }
    break;
  }
  parent.append(el);
  return i;
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function isTableStart(lines, i) {
  const next = lines[i + 1];
  return (
    lines[i].includes("|") &&
    next !== undefined &&
    /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/.test(next)
  );
}

/** A table starting at line `i`; returns the next line. */
function table(lines, i, parent) {
  const header = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((cell) =>
    cell.startsWith(":") && cell.endsWith(":") ? "center" : cell.endsWith(":") ? "right" : null,
  );
  const align = (column) => (aligns[column] ? `align-${aligns[column]}` : null);
  const head = h("tr", {}, header.map((cell, c) => h("th", { scope: "col", class: align(c) }, inline(cell))));
  const body = h("tbody");
  i += 2;
  while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") {
    const row = cells(lines[i]);
    body.append(h("tr", {}, header.map((_, c) => h("td", { class: align(c) }, inline(row[c] ?? "")))));
    i += 1;
  }
  parent.append(h("div", { class: "table-scroll" }, h("table", {}, h("thead", {}, head), body)));
  return i;
}

/** Inline Markdown (code, links, strong, emphasis) as an array of nodes. */
export function inline(text) {
  const nodes = [];
  let plain = "";
  const flush = () => {
    if (plain) nodes.push(document.createTextNode(plain));
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const escaped = rest.match(/^\\([\\`*_[\]()#+\-.!|>~])/);
    if (escaped) {
      plain += escaped[1];
      i += 2;
      continue;
    }
    const code = rest.match(/^(`+)([\s\S]*?[^`])\1(?!`)/);
    if (code) {
      flush();
      nodes.push(h("code", {}, code[2].trim()));
      i += code[0].length;
      continue;
    }
    const link = rest.match(/^\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/);
    if (link) {
      flush();
      const label = inline(link[1]);
      if (SAFE_LINK.test(link[2])) {
        const external = /^https?:/i.test(link[2]);
        nodes.push(h("a", { href: link[2], rel: external ? "noopener noreferrer" : null, target: external ? "_blank" : null }, label));
      } else {
        nodes.push(...label);
      }
      i += link[0].length;
      continue;
    }
    const strong = rest.match(/^(\*\*|__)(?=\S)([\s\S]*?\S)\1/);
    if (strong) {
      flush();
      nodes.push(h("strong", {}, inline(strong[2])));
      i += strong[0].length;
      continue;
    }
    const emphasis = rest.match(/^(\*|_)(?=\S)([\s\S]*?\S)\1(?![\w*])/);
    if (emphasis && !(emphasis[1] === "_" && /\w/.test(text[i - 1] ?? ""))) {
      flush();
      nodes.push(h("em", {}, inline(emphasis[2])));
      i += emphasis[0].length;
      continue;
    }
    const strike = rest.match(/^~~(?=\S)([\s\S]*?\S)~~/);
    if (strike) {
      flush();
      nodes.push(h("del", {}, inline(strike[1])));
      i += strike[0].length;
      continue;
    }
    plain += text[i];
    i += 1;
  }
  flush();
  return nodes;
}
