"""plan.visualize(): the plan drawn as SVG, a self-contained interactive HTML page, or DOT.

    Plan --picture.build_picture--> Picture --svg.draw_svg / dot.draw_dot--> text --> file

Tasks are coloured by node (legend on top), boxed by stage, and joined by arrows whose width
grows with the bytes they carry between nodes; above 200 tasks the repeated calls of a
function within a stage draw as one group. Everything is pure Python: no Graphviz, no
network. The HTML page inlines the SVG plus a few lines of CSS and JavaScript that turn each
box's ``<title>`` into a tooltip and highlight its arrows; without JavaScript the titles
still show as the browser's own tooltips.

The render functions are pure; ``visualize`` is the thin shell that writes the file.
"""

from __future__ import annotations

from collections.abc import Callable

from plait.compiler.draw.dot import draw_dot
from plait.compiler.draw.picture import build_picture
from plait.compiler.draw.svg import draw_svg
from plait.compiler.plan import Plan
from plait.errors import PlanError

_CSS = """\
.plait-plan{position:relative;font-family:Helvetica,Arial,sans-serif}
.plait-plan [data-tip]{cursor:help}
.plait-plan .plait-vertex:hover rect{stroke-width:3}
.plait-plan .plait-hot path{stroke:#111111;stroke-opacity:1}
.plait-plan .plait-tip{display:none;position:fixed;z-index:1000;max-width:44em;
 padding:6px 9px;background:#fffff6;color:#222222;border:1px solid #999999;border-radius:4px;
 font:12px/1.4 Menlo,Consolas,monospace;white-space:pre-wrap;pointer-events:none;
 box-shadow:0 2px 8px rgba(0,0,0,.25)}"""

# Moves each <title> into data-tip (so the browser's own tooltip does not double ours), then
# shows data-tip by the pointer and darkens the arrows of the box under it.
_JS = """\
(function () {
  var root = document.currentScript.parentNode, tip = root.querySelector(".plait-tip");
  root.querySelectorAll("svg title").forEach(function (title) {
    var owner = title.parentNode;
    if (owner.tagName.toLowerCase() !== "svg") owner.setAttribute("data-tip", title.textContent);
    owner.removeChild(title);
  });
  function hot(key, on) {
    root.querySelectorAll(".plait-edge").forEach(function (edge) {
      if (edge.getAttribute("data-src") === key || edge.getAttribute("data-dst") === key) {
        edge.classList.toggle("plait-hot", on);
      }
    });
  }
  function over(event, on) {
    var owner = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!owner) return;
    tip.textContent = owner.getAttribute("data-tip");
    tip.style.display = on ? "block" : "none";
    if (owner.hasAttribute("data-key")) hot(owner.getAttribute("data-key"), on);
  }
  root.addEventListener("mouseover", function (event) { over(event, true); });
  root.addEventListener("mouseout", function (event) { over(event, false); });
  root.addEventListener("mousemove", function (event) {
    tip.style.left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = (event.clientY + 16) + "px";
  });
})();"""


def visualize(plan: Plan, filename: str | None = None) -> str:
    """Write ``plan`` to ``filename`` as .svg, .html or .dot (by extension); return the text.

    With no filename nothing is written and the SVG text is returned.
    """
    if filename is None:
        return render_svg(plan)
    render = FORMATS.get(_extension(filename))
    if render is None:
        raise PlanError(f"cannot visualize a plan as {filename!r}: the file name must end in "
                        f"{', '.join(sorted(FORMATS))} (SVG, interactive HTML, Graphviz DOT)")
    text = render(plan)
    with open(filename, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)
    return text


def render_svg(plan: Plan, collapse: bool | None = None) -> str:
    """SVG text; ``collapse`` None groups repeated calls only above 200 tasks."""
    return draw_svg(build_picture(plan, collapse))


def render_dot(plan: Plan, collapse: bool | None = None) -> str:
    """Graphviz DOT text with a ``cluster_<stage>`` subgraph per stage."""
    return draw_dot(build_picture(plan, collapse))


def render_html(plan: Plan, collapse: bool | None = None) -> str:
    """A whole HTML page that needs nothing else: open it from disk, offline."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>plait plan</title>\n<style>body{{margin:12px;background:#ffffff}}</style>\n"
            f"</head>\n<body>\n{render_html_fragment(plan, collapse)}</body>\n</html>\n")


def render_html_fragment(plan: Plan, collapse: bool | None = None) -> str:
    """The SVG with its tooltip CSS and script in one ``<div>``: a notebook cell's output.

    The script finds its own ``<div>`` (``document.currentScript``) and the CSS is scoped by
    class, so several plans on one page do not disturb each other.
    """
    return (f'<div class="plait-plan">\n<style>\n{_CSS}\n</style>\n'
            f"{render_svg(plan, collapse)}"
            f'<div class="plait-tip"></div>\n<script>\n{_JS}\n</script>\n</div>\n')


def _extension(filename: str) -> str:
    """The lower-cased extension, dot included ('' if none).

    >>> _extension("out/Plan.SVG"), _extension("plan"), _extension(".dot")
    ('.svg', '', '')
    """
    name = str(filename).replace("\\", "/").rpartition("/")[2]
    stem, dot, extension = name.rpartition(".")
    return f".{extension.lower()}" if dot and stem else ""


FORMATS: dict[str, Callable[[Plan], str]] = {".dot": render_dot, ".html": render_html,
                                             ".svg": render_svg}
