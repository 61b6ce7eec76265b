"""Lines per module and the most complex functions of a package, as markdown tables.

    python scripts/code_metrics.py [PACKAGE_DIR] [--top N]

Cyclomatic complexity is McCabe's, counted on the ast: 1 for the function, plus 1 for each
``if``/``elif``, conditional expression, ``for``, ``while``, ``except`` clause, comprehension
``if`` and ``match`` case, plus (n - 1) for a boolean operator joining n operands.
``with``, ``else`` and ``finally`` add nothing: they do not branch. A nested function or
class is measured on its own, not inside its parent (as radon does). Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.match_case)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@dataclass(frozen=True)
class FunctionMetric:
    module: str
    name: str  # qualified within the module: Class.method, outer.<locals>.inner
    line: int
    lines: int
    complexity: int


@dataclass(frozen=True)
class ModuleMetric:
    module: str
    lines: int  # every physical line, as wc -l counts them
    code_lines: int  # lines that are neither blank nor only a comment


def complexity(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """McCabe complexity of ``function``'s own body (nested functions and classes excluded;
    lambdas are expressions of this function and count here)."""
    count = 1
    pending: list[ast.AST] = list(function.body)  # defaults and decorators run in the enclosing scope
    while pending:
        node = pending.pop()
        if isinstance(node, _SCOPES) and not isinstance(node, ast.Lambda):
            continue
        if isinstance(node, _BRANCHES):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += len(node.ifs)
        pending.extend(ast.iter_child_nodes(node))
    return count


def _functions(tree: ast.Module, module: str) -> list[FunctionMetric]:
    found: list[FunctionMetric] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                found.append(FunctionMetric(module, name, child.lineno, end - child.lineno + 1, complexity(child)))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def measure(package: Path) -> tuple[list[ModuleMetric], list[FunctionMetric]]:
    modules: list[ModuleMetric] = []
    functions: list[FunctionMetric] = []
    base = package.parent
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(base).as_posix()
        lines = source.splitlines()
        code = sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))
        modules.append(ModuleMetric(name, len(lines), code))
        functions.extend(_functions(ast.parse(source, filename=str(path)), name))
    return modules, functions


def markdown(modules: list[ModuleMetric], functions: list[FunctionMetric], top: int) -> str:
    out = ["| module | lines | code lines |", "|---|---:|---:|"]
    for module in sorted(modules, key=lambda m: (-m.lines, m.module)):
        out.append(f"| {module.module} | {module.lines} | {module.code_lines} |")
    out.append(
        f"| **total ({len(modules)} modules)** | **{sum(m.lines for m in modules)}** "
        f"| **{sum(m.code_lines for m in modules)}** |"
    )
    out += ["", f"| function (top {top} by cyclomatic complexity) | complexity | lines |", "|---|---:|---:|"]
    ranked = sorted(functions, key=lambda f: (-f.complexity, -f.lines, f.module, f.line))
    for function in ranked[:top]:
        out.append(f"| {function.module}:{function.line} {function.name} | {function.complexity} | {function.lines} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="evalkit", type=Path, help="package directory (default: evalkit)")
    parser.add_argument("--top", type=int, default=15, help="how many functions to list (default: 15)")
    args = parser.parse_args(argv)
    if not args.package.is_dir():
        print(f"code_metrics: {args.package} is not a directory", file=sys.stderr)
        return 2
    try:
        modules, functions = measure(args.package)
    except SyntaxError as error:
        print(f"code_metrics: {error.filename}:{error.lineno}: {error.msg}", file=sys.stderr)
        return 2
    print(markdown(modules, functions, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
