// Model replies rendered as Markdown (code blocks, lists, tables) with marked 18.3.0 (vendor/).
// Model output is untrusted text: raw HTML in it is shown escaped, never parsed; images are shown as
// their alt text (an image would make the page request another host); links keep only web and mail
// URLs (no javascript: or data:).

import { Marked } from "./vendor/marked.esm.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);
const SAFE_URL = /^(https?:|mailto:|#|\/(?!\/)|\.{0,2}\/|[^:]*$)/i;

const marked = new Marked({
  gfm: true,
  renderer: {
    html({ text }) { return escapeHtml(text); },
    image({ text }) { return escapeHtml(text); },
    link({ href, tokens }) {
      // false: marked's own rendering (which escapes the href and the text).
      return SAFE_URL.test(href.trim()) ? false : this.parser.parseInline(tokens);
    },
  },
});

/** The HTML of a Markdown text, safe to assign to innerHTML. A reply still streaming may end
 * mid-construct (an open code fence): marked renders it as far as it goes. */
export function renderMarkdown(text) {
  return marked.parse(text);
}
