"""Directed graphs drawn left to right, and autograd's tape as such a graph.

`draw_graph(nodes, edges)` lays out any small DAG in columns (a node's column is the
longest path to it from a source), orders each column by its inputs' positions and draws
boxes ("box": data) and rounded boxes ("op": operations) joined by arrows.

`record_tape(root)` reads the tape below a tensor before `backward` frees it, and marks
every intermediate tensor to keep its gradient; `draw_tape(tape)` then draws each tensor
with its value and gradient and each Function between them, like micrograd's draw_dot.
"""
import math

from .canvas import AXIS, MUTED, TEXT, new_figure

FILL = {"box": (232, 241, 250), "op": (255, 236, 214), "const": (240, 240, 240)}
OUTLINE = {"box": (31, 119, 180), "op": (255, 127, 14), "const": (150, 150, 150)}


def _columns(ids, edges):
    """Column of each node: the longest path to it from a node with no inputs; a node with no
    inputs goes just before the first node that uses it."""
    inputs = {i: [] for i in ids}
    for a, b in edges:
        inputs[b].append(a)
    column = {}

    def depth(node):  # iterative: graphs may be deeper than Python's recursion limit
        stack = [node]
        while stack:
            n = stack[-1]
            todo = [p for p in inputs[n] if p not in column]
            if todo:
                stack.extend(todo)
                continue
            column[n] = 1 + max((column[p] for p in inputs[n]), default=-1)
            stack.pop()
        return column[node]

    for i in ids:
        depth(i)
    consumers = {i: [b for a, b in edges if a == i] for i in ids}
    for i in ids:  # a source sits just before its first consumer, not far left of it
        if not inputs[i] and consumers[i]:
            column[i] = min(column[c] for c in consumers[i]) - 1
    return column, inputs


def draw_graph(nodes, edges, title=None, gap=(60, 18)):
    """A PIL image of a small DAG. `nodes`: dicts with id, lines (text lines) and kind ("box",
    "op" or "const"); `edges`: (from id, to id) pairs. Sources are on the left."""
    draw_probe = new_figure((10, 10))[1]
    fonts = new_figure((10, 10))[2]
    small = fonts["small"]
    ids = [n["id"] for n in nodes]
    by_id = {n["id"]: n for n in nodes}
    column, inputs = _columns(ids, edges)
    sizes = {}
    for n in nodes:
        width = max(draw_probe.textlength(line, font=small) for line in n["lines"]) + 20
        sizes[n["id"]] = (width, 17 * len(n["lines"]) + 12)
    groups = [[i for i in ids if column[i] == c] for c in range(max(column.values()) + 1)]
    position = {}
    for c, group in enumerate(groups):  # order by the mean row of a node's inputs: fewer crossings
        group.sort(key=lambda i: (sum(position[p] for p in inputs[i]) / len(inputs[i]) if inputs[i] else 0.0))
        for row, i in enumerate(group):
            position[i] = row
    col_width = [max(sizes[i][0] for i in g) for g in groups]
    col_height = [sum(sizes[i][1] for i in g) + gap[1] * (len(g) - 1) for g in groups]
    top = 50 if title else 16
    width = int(sum(col_width) + gap[0] * (len(groups) - 1) + 40)
    if title:  # room for the title too
        width = max(width, int(draw_probe.textlength(title, font=fonts["figure"])) + 40)
    height = int(max(col_height) + top + 20)
    image, draw, fonts = new_figure((max(width, 240), height), title)
    boxes, x = {}, (width - (sum(col_width) + gap[0] * (len(groups) - 1))) / 2
    for c, group in enumerate(groups):
        y = top + (max(col_height) - col_height[c]) / 2
        for i in group:
            w, h = sizes[i]
            bx = x + (col_width[c] - w) / 2
            boxes[i] = (bx, y, bx + w, y + h)
            y += h + gap[1]
        x += col_width[c] + gap[0]
    for a, b in edges:
        ax0, ay0, ax1, ay1 = boxes[a]
        bx0, by0, bx1, by1 = boxes[b]
        start, end = (ax1, (ay0 + ay1) / 2), (bx0, (by0 + by1) / 2)
        draw.line([start, end], fill=AXIS, width=1)
        angle = math.atan2(end[1] - start[1], end[0] - start[0])
        for side in (-0.4, 0.4):
            draw.line([end, (end[0] - 9 * math.cos(angle + side), end[1] - 9 * math.sin(angle + side))], fill=AXIS,
                      width=2)
    for i, (x0, y0, x1, y1) in boxes.items():
        kind = by_id[i].get("kind", "box")
        if kind == "op":
            draw.rounded_rectangle((x0, y0, x1, y1), radius=12, fill=FILL[kind], outline=OUTLINE[kind], width=2)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=FILL.get(kind, FILL["box"]), outline=OUTLINE.get(kind, AXIS),
                           width=2)
        for k, line in enumerate(by_id[i]["lines"]):
            color = TEXT if k == 0 else MUTED if kind == "const" else TEXT
            draw.text(((x0 + x1) / 2, y0 + 7 + 17 * k), line, fill=color, font=small, anchor="ma")
    return image


def _short(tensor):
    """A tensor's values in a few characters: the numbers when there are at most 4, else the shape."""
    if tensor.size > 4:
        return f"shape {tensor.shape}"
    text = ", ".join(f"{v:.4g}" for v in tensor.to_flat())
    return text if tensor.ndim == 0 else f"[{text}]"


class Tape:
    """The tape below one tensor, read before backward: tensors, Functions and their links."""

    def __init__(self, tensors, leaves, ops, edges, names):
        self.tensors, self.leaves, self.ops, self.edges, self.names = tensors, leaves, ops, edges, names


def record_tape(root, names=None):
    """Read the graph below `root` (tensors and the Functions that made them) and ask every
    intermediate tensor to keep its gradient. Call it before `root.backward()`. `names`: a dict
    {label: tensor} for the tensors you want named in the drawing."""
    label_of = {id(t): label for label, t in (names or {}).items()}
    tensors, leaves, ops, edges, seen, stack = {}, set(), {}, [], set(), [root]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        tensors[id(t)] = t
        if t._ctx is None:
            leaves.add(id(t))
            continue
        t.retain_grad()
        ctx = t._ctx
        ops[id(ctx)] = type(ctx).__name__
        edges.append((f"op{id(ctx)}", f"t{id(t)}"))
        for parent in ctx.parents:
            edges.append((f"t{id(parent)}", f"op{id(ctx)}"))
            stack.append(parent)
    return Tape(tensors, leaves, ops, edges, label_of)


def draw_tape(tape, title=None):
    """The recorded tape as a picture: each tensor with its name, value and gradient (once
    backward has run), each Function as an orange node between its inputs and its output."""
    nodes = []
    for key, t in tape.tensors.items():
        kind = "leaf" if key in tape.leaves else "tensor"
        value = _short(t)
        lines = [tape.names.get(key) or (kind if t.requires_grad else "constant"), f"data {value}"]
        if t.requires_grad:
            grad = "none" if t.grad is None else _short(t.grad)
            lines.append(f"grad {grad}")
        nodes.append(dict(id=f"t{key}", lines=lines, kind="box" if t.requires_grad else "const"))
    nodes += [dict(id=f"op{key}", lines=[name], kind="op") for key, name in tape.ops.items()]
    edges = list(dict.fromkeys(tape.edges))  # x * x: one arrow per distinct link
    return draw_graph(nodes, edges, title)
