"""The plan for people: its table (``explain``) and its pictures (SVG, HTML, DOT).

Everything here reads a finished ``Plan`` and nothing of the compiler reads it back, except
``Plan``'s own methods, which import it when called: compiling a plan, and ``import plait``,
never load the drawing code. Data flow::

    Plan --explain.explain--> text table
    Plan --picture.build_picture--> Picture --layout.layout--> Layout
         --svg.draw_svg / dot.draw_dot--> text --visualize.visualize--> .svg / .html / .dot

Modules, bottom up: ``picture`` (what is shown), ``style`` (colours, widths), ``layout``
(where it goes), ``svg`` and ``dot`` (the two renderers), ``visualize`` (the file and HTML
shell), ``explain`` (the table). Sizes are written by ``plait.compiler.units.format_bytes``.
"""
