"""What a translated KQL query may touch: the estate's tables, and nothing else on this machine.

duckdb-kql turns a query into SQL, and DuckDB would resolve a table name in that SQL to a file
(`['/etc/passwd']` becomes `SELECT * FROM "/etc/passwd"`), a URL, a Python variable, or a
catalog view such as `sqlite_master` or `information_schema.tables`. DuckDB's own settings
(external access off, no replacement scans, configuration locked) are the outer wall; this
module is the inner one: it reads DuckDB's parse tree of the SQL (`json_serialize_sql`) and
refuses any table that is not one of the estate's views or the query's own CTEs, any table
function, and the few scalar functions whose one call can allocate without bound (DuckDB's
`memory_limit` does not cover a single huge list or string).

It also rewrites KQL's `range` operator, which duckdb-kql emits as
`SELECT UNNEST(generate_series(a, b, c)) AS "x"` (a list of every value, built in one call), into
DuckDB's streaming `generate_series` table function, so a billion-row range stops at the row
cap or the time limit instead of building the list first.

Refusals carry one fixed message: they never echo what the query named, so an answer says
nothing about which files, schemas or variables exist.

DuckDB's parse tree of a large query is large (the inventory query's is megabytes, and takes
longer to read than the query takes to run), so a lexical pass goes first: a query whose SQL
names nothing reserved (no catalog view, schema, database or table function name, no file-like
identifier) can only reach the estate's views, its CTEs, or names that do not exist, and runs
as it is; anything else is vetted on the parse tree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

#: The one message a refused query gets: it names nothing the query asked for.
REFUSED = (
    "The query reads something other than the Resource Graph tables this sandbox serves "
    "({tables}), or calls a function the sandbox does not run."
)

#: How many repetitions `strrep` (DuckDB `repeat`) may ask for: it builds its string in one call.
MAX_REPEAT = 100_000

#: Catalog names no CTE may shadow-test: a CTE of one of these names, referenced outside its
#: scope, would resolve to DuckDB's catalog instead.
_CATALOG_PREFIXES = ("sqlite_", "pg_", "duckdb_", "information_schema")
#: Scalar functions a query may never call: catalog and settings readers, file readers, and
#: list builders whose size is not bounded by the rows (duckdb-kql maps no KQL to them; they
#: can only appear through a translation quirk).
_DENIED_FUNCTIONS = re.compile(
    r"^(?:duckdb_.*|pragma_.*|read_.*|sqlite_.*|glob|current_setting|current_schemas?|"
    r"current_database|current_catalog|current_query|getenv|generate_series|range|"
    r"list_repeat|array_repeat|query|query_table|enum_range.*)$",
    re.IGNORECASE,
)
#: Prefixes of names that may reach past the estate: catalog views and functions, settings, and
#: the private schema behind the views.
_RESERVED_PREFIXES = ("sqlite_", "pg_", "duckdb_", "pragma_", "information_schema", "store_")
_TOKEN = re.compile(
    r"""(?P<string>'(?:[^']|'')*')|(?P<quoted>"(?:[^"]|"")*")|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|(?P<odd>--|/\*|\$|')|(?P<other>[^'"A-Za-z_$\-/]+|[-/])""",
    re.DOTALL,
)
#: Characters an identifier needs to name a file, a glob, a URL or a qualified name.
_FILE_LIKE = re.compile(r"[^A-Za-z0-9_ ]")
_SERIES_CALL = re.compile(rb"^UNNEST\s*\(\s*generate_series\s*\(", re.IGNORECASE)
_ALIAS = re.compile(rb'^\s+AS\s+("(?:[^"]|"")+")', re.IGNORECASE)


class Parser(Protocol):
    """Something that returns DuckDB's parse tree of a SQL text (as `json_serialize_sql` does)."""

    def __call__(self, sql: str) -> str: ...


class QueryRefusedError(Exception):
    """The query would read outside the estate; the message names nothing from the query."""


@dataclass(frozen=True, slots=True)
class Vetted:
    """The SQL to run: the translation, with `range` sources made streaming."""

    sql: str


def vet(sql: str, tables: Collection[str], parse: Parser, reserved: Collection[str] = ()) -> Vetted:
    """Check `sql` (duckdb-kql's translation) reads only `tables`; rewrite `range` sources.

    Raises QueryRefusedError otherwise. `parse` is DuckDB's `json_serialize_sql`; `reserved`
    the names DuckDB's catalog resolves beyond the estate (views, schemas, databases, table
    functions), lower case, which send a query to the parse tree.
    """
    allowed = frozenset(t.lower() for t in tables)
    if _plain(sql, frozenset(reserved)):
        return Vetted(sql)
    tree = _tree(sql, parse, allowed)
    rewritten = _stream_ranges(sql, tree)
    if rewritten != sql:
        tree = _tree(rewritten, parse, allowed)
    _check(tree, allowed)
    return Vetted(rewritten)


def _plain(sql: str, reserved: frozenset[str]) -> bool:
    """Whether the SQL names nothing reserved and nothing file-like (lexically, outside strings).

    Unsure means no: comments, dollar quotes and prefixed strings are left to the parse tree.
    """
    if not reserved:
        return False
    position = 0
    for token in _TOKEN.finditer(sql):
        if token.start() != position:
            return False
        position = token.end()
        kind = token.lastgroup
        if kind == "odd":
            return False
        if kind == "word":
            name = token.group().lower()
            if (
                name in reserved
                or name.startswith(_RESERVED_PREFIXES)
                or (len(name) == 1 and sql[position : position + 1] == "'")
            ):
                return False
        elif kind == "quoted":
            name = token.group()[1:-1].replace('""', '"')
            lowered = name.lower()
            if (
                lowered in reserved
                or lowered.startswith(_RESERVED_PREFIXES)
                or _FILE_LIKE.search(name)
            ):
                return False
    return position == len(sql)


def _refused(tables: Collection[str]) -> QueryRefusedError:
    return QueryRefusedError(REFUSED.format(tables=", ".join(sorted(tables))))


def _tree(sql: str, parse: Parser, allowed: frozenset[str]) -> dict[str, Any]:
    tree = json.loads(parse(sql))
    if not isinstance(tree, dict) or tree.get("error") or len(tree.get("statements", ())) != 1:
        raise _refused(allowed)
    return tree


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in the tree, depth first, without recursion (queries nest deeply)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check(tree: dict[str, Any], allowed: frozenset[str]) -> None:
    nodes = list(_nodes(tree["statements"]))
    ctes: set[str] = set()
    for node in nodes:
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", ()):
                name = str(entry.get("key", "")).lower()
                if name.startswith(_CATALOG_PREFIXES):
                    raise _refused(allowed)
                ctes.add(name)
    # generate_series is allowed as the streaming table function `range` becomes, only.
    series_sources = {
        id(node["function"])
        for node in nodes
        if node.get("type") == "TABLE_FUNCTION" and _is_streaming_series(node)
    }
    for node in nodes:
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", "")).lower()
            if node.get("schema_name") or node.get("catalog_name"):
                raise _refused(allowed)
            if name not in allowed and name not in ctes:
                raise _refused(allowed)
        elif kind == "TABLE_FUNCTION":
            if not _is_streaming_series(node):
                raise _refused(allowed)
        elif kind in ("SHOW_REF", "COLUMN_DATA_REF", "DELIM_GET", "EXPRESSION_LIST"):
            raise _refused(allowed)
        elif node.get("class") == "FUNCTION":
            name = str(node.get("function_name", ""))
            if node.get("schema") or node.get("catalog"):
                raise _refused(allowed)
            if _DENIED_FUNCTIONS.match(name) and id(node) not in series_sources:
                raise _refused(allowed)
            if name.lower() == "repeat" and not _small_repeat(node):
                raise _refused(allowed)


def _is_streaming_series(node: dict[str, Any]) -> bool:
    # Its arguments are plain expressions, which _check walks like any other.
    function = node.get("function")
    return isinstance(function, dict) and function.get("function_name") == "generate_series"


def _small_repeat(node: dict[str, Any]) -> bool:
    arguments = node.get("arguments") or node.get("children") or []
    if len(arguments) != 2:
        return False
    count = arguments[1]
    count = count.get("expression", count) if isinstance(count, dict) else count
    while isinstance(count, dict) and count.get("class") == "CAST":
        count = count.get("child")
    if not isinstance(count, dict) or count.get("class") != "CONSTANT":
        return False
    literal = count.get("literal") or count.get("value") or {}
    text = str(literal.get("text", literal.get("value", ""))) if isinstance(literal, dict) else ""
    return text.lstrip("-").isdigit() and int(text) <= MAX_REPEAT


def _stream_ranges(sql: str, tree: dict[str, Any]) -> str:
    """`SELECT UNNEST(generate_series(a, b, c)) AS "x"` -> the streaming table function.

    Works on the bytes (parse-tree positions count bytes) from the end backwards, so earlier
    positions stay valid while later ones are replaced.
    """
    text = sql.encode()
    spans: list[tuple[int, int, bytes]] = []
    for node in _nodes(tree["statements"]):
        if node.get("type") != "SELECT_NODE":
            continue
        source = node.get("from_table") or {}
        items = node.get("select_list") or []
        if source.get("type") != "EMPTY" or len(items) != 1:
            continue
        item = items[0]
        arguments = item.get("arguments") or []
        if (
            item.get("class") != "FUNCTION"
            or str(item.get("function_name", "")).lower() != "unnest"
            or len(arguments) != 1
        ):
            continue
        series = arguments[0].get("expression", {})
        if str(series.get("function_name", "")).lower() != "generate_series":
            continue
        start, length = int(item["query_location"]), int(item["query_location_length"])
        call = text[start : start + length]
        if not _SERIES_CALL.match(call) or not call.rstrip().endswith(b"))"):
            continue
        alias = _ALIAS.match(text[start + length :])
        if alias is None:
            continue
        series_start = int(series["query_location"])
        series_text = text[series_start : series_start + int(series["query_location_length"])]
        name = alias.group(1)
        replacement = name + b" FROM " + series_text + b" AS _range(" + name + b")"
        spans.append((start, start + length + alias.end(), replacement))
    for begin, end, replacement in sorted(spans, reverse=True):
        text = text[:begin] + replacement + text[end:]
    return text.decode()
