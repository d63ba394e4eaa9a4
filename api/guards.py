"""Safety limits and error codes, as Strawberry schema extensions.

``QueryGuard`` measures each operation before it runs, with its variables, and refuses
it when it is too deep or too costly. Cost is an estimate of the work: one per field,
times the page size asked for lists, plus a weight for expensive fields (a depth-d
linked-accounts search weighs 5**d). ``ErrorCodes`` gives every error an
``extensions.code`` and hides the text of unexpected exceptions, so a caller never sees
a stack trace or an internal message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    value_from_ast_untyped,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.error import GraphQLSyntaxError
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult as StrawberryExecutionResult

from api.errors import ApiError
from graph.errors import InvalidBatchError, NotFoundError, RiskGraphError, StoreUnavailableError

log = logging.getLogger("riskgraph.api")

# Extra weight of fields that do real work, by "Type.field".
FIELD_WEIGHT: Mapping[str, int] = {
    "Query.users": 5,
    "Query.rings": 500,
    "Query.ring": 50,
    "User.ring": 50,
    "User.explanation": 50,
    "User.decisionHistory": 10,
    "Mutation.decideLimit": 20,
    "Mutation.rescoreUser": 200,
    "Mutation.flagUser": 10,
    "Mutation.reviewLimits": 5000,
}
LIST_ESTIMATE = 10  # children of a list field without a page size
DEFAULT_FIRST = 20


# Measurements by (query text, operation name, page size limit), then by the values of
# the variables the measurement read (``first`` and ``depth`` given as variables): the
# limit engine sends one document again and again with only its user id changing.
_MEASURED_MAX_DOCS = 256
_MEASURED_MAX_VALUES = 64
_measured: dict[tuple[str, str | None, int], tuple[str, tuple[str, ...], dict[Any, Any]]] = {}


class QueryGuard(SchemaExtension):
    """Refuse operations deeper than ``Settings.api_max_depth`` or costlier than
    ``Settings.api_max_cost``."""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        settings = ec.context.settings
        doc = ec.graphql_document
        # The name the caller gave: Strawberry's ``operation_name`` falls back to the
        # first operation, which the specification forbids when there are several.
        asked = getattr(ec, "_provided_operation_name", ec.operation_name)
        op = _operation(doc, asked) if doc is not None else None
        if op is None and doc is not None:
            ec.result = GraphQLExecutionResult(data=None, errors=[_no_operation(doc, asked)])
        elif op is not None:
            label, cost, depth = self._measure(op, settings.api_max_page)
            if hasattr(ec.context, "operation"):
                ec.context.operation = label
            error = None
            if depth > settings.api_max_depth:
                error = GraphQLError(
                    f"query depth {depth} exceeds the maximum of {settings.api_max_depth}; "
                    "ask for fewer nested levels",
                    extensions={"code": "QUERY_TOO_DEEP", "depth": depth,
                                "maxDepth": settings.api_max_depth},
                )
            elif cost >= TOO_COMPLEX_COST:
                error = GraphQLError(
                    f"the query spreads fragments into more than {MAX_MEASURED_SELECTIONS:,} "
                    "selections; spread each fragment fewer times",
                    extensions={"code": "QUERY_TOO_COSTLY", "maxCost": settings.api_max_cost},
                )
            elif cost > settings.api_max_cost:
                error = GraphQLError(
                    f"query cost {cost} exceeds the maximum of {settings.api_max_cost}; "
                    "ask for smaller pages, less depth or fewer fields",
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": cost,
                                "maxCost": settings.api_max_cost},
                )
            if error is not None:
                ec.result = GraphQLExecutionResult(data=None, errors=[error])
        yield

    def _measure(self, op: OperationDefinitionNode, max_page: int) -> tuple[str, int, int]:
        """(root fields, cost, depth) of the operation, measured once per document and
        values of the variables that change its cost."""
        ec = self.execution_context
        variables = ec.variables or {}
        query = ec.query
        doc_key = (query, ec.operation_name, max_page) if isinstance(query, str) else None
        seen = _measured.get(doc_key) if doc_key is not None else None
        if seen is not None:
            label, used, by_values = seen
            values = tuple(repr(variables.get(v)) for v in used)
            hit = by_values.get(values)
            if hit is not None:
                return label, hit[0], hit[1]
        doc = ec.graphql_document
        frags = {d.name.value: d for d in doc.definitions  # type: ignore[union-attr]
                 if isinstance(d, FragmentDefinitionNode)}
        root = ec.schema._schema.get_root_type(op.operation)
        label = ",".join(sorted({s.name.value for s in op.selection_set.selections
                                 if isinstance(s, FieldNode)}))
        measure = _Measure(ec.schema._schema, frags, variables, max_page)
        try:
            cost, depth = measure.selection(root, op.selection_set, 1)
        except _TooComplex:
            return label, TOO_COMPLEX_COST, 0
        if doc_key is not None:
            used = tuple(sorted(measure.used))
            if seen is None or seen[1] != used:
                if len(_measured) >= _MEASURED_MAX_DOCS:
                    _measured.clear()
                seen = _measured[doc_key] = (label, used, {})
            if len(seen[2]) >= _MEASURED_MAX_VALUES:
                seen[2].clear()
            seen[2][tuple(repr(variables.get(v)) for v in used)] = (cost, depth)
        return label, cost, depth


def _no_operation(doc: Any, name: str | None) -> GraphQLError:
    """The error for a document whose operation to run cannot be told (the GraphQL
    specification: several operations need ``operationName``)."""
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        message = f"the document has no operation named {name!r}"
    elif ops:
        message = (f"the document has {len(ops)} operations; say which to run with "
                   "operationName")
    else:
        message = "the document has no operation to run"
    return GraphQLError(message, extensions={"code": "BAD_REQUEST"})


def _operation(doc: Any, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return ops[0] if len(ops) == 1 else None
    return next((o for o in ops if o.name and o.name.value == name), None)


class _TooComplex(Exception):  # control flow inside the guard, never raised out
    """The document has more selections than the guard measures."""


# The guard's own work is bounded: a document is refused when measuring it would visit
# more selections than this (every fragment is measured once, so a document within the
# token limit stays far below it unless it is built to be refused).
MAX_MEASURED_SELECTIONS = 20_000
TOO_COMPLEX_COST = 2**63 - 1  # the cost given to a document refused unmeasured


class _Measure:
    def __init__(self, schema: GraphQLSchema, frags: dict[str, FragmentDefinitionNode],
                 variables: Mapping[str, Any], max_page: int) -> None:
        self.schema, self.frags, self.variables = schema, frags, variables
        self.max_page = max_page
        self.used: set[str] = set()  # variables whose values the cost depends on
        # (cost, depth below the spread) of each fragment, measured once
        self.fragments: dict[str, tuple[int, int]] = {}
        self.open: set[str] = set()  # fragments being measured (a cycle is skipped)
        self.visited = 0

    def fragment(self, name: str, depth: int) -> tuple[int, int] | None:
        """(cost, depth) of spreading fragment ``name`` at ``depth``; None if unknown."""
        known = self.fragments.get(name)
        if known is None:
            frag = self.frags.get(name)
            if frag is None or name in self.open:
                return None  # execution reports an unknown fragment or a cycle
            self.open.add(name)
            t = self.schema.get_type(frag.type_condition.name.value)
            known = self.fragments[name] = self.selection(t, frag.selection_set, 1)
            self.open.discard(name)
        cost, below = known
        return cost, below + depth - 1

    def selection(
        self, parent: GraphQLNamedType | None, sel: SelectionSetNode | None, depth: int
    ) -> tuple[int, int]:
        """(cost, depth) of a selection set under ``parent``."""
        if sel is None:
            return 0, depth - 1
        cost, deepest = 0, depth - 1
        self.visited += len(sel.selections)
        if self.visited > MAX_MEASURED_SELECTIONS:
            raise _TooComplex
        for node in sel.selections:
            if isinstance(node, FieldNode):
                c, d = self.field(parent, node, depth)
            elif isinstance(node, InlineFragmentNode):
                t = parent
                if node.type_condition is not None:
                    t = self.schema.get_type(node.type_condition.name.value)
                c, d = self.selection(t, node.selection_set, depth)
            elif isinstance(node, FragmentSpreadNode):
                measured = self.fragment(node.name.value, depth)
                if measured is None:
                    continue
                c, d = measured
            else:
                continue
            cost += c
            deepest = max(deepest, d)
        return cost, deepest

    def field(
        self, parent: GraphQLNamedType | None, node: FieldNode, depth: int
    ) -> tuple[int, int]:
        name = node.name.value
        if name.startswith("__"):
            return 0, depth - 1  # introspection is bounded by the token limit
        fdef = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
        child = get_named_type(fdef.type) if fdef is not None else None
        args = self.args(node)
        key = f"{parent.name if parent else '?'}.{name}"
        weight = FIELD_WEIGHT.get(key, 0)
        if name == "linkedAccounts":
            d_arg = args.get("depth", 1)
            # a malformed depth is refused by execution with its own message
            weight += 5 ** max(1, min(d_arg if isinstance(d_arg, int) else 4, 4))
        inner, d = self.selection(child, node.selection_set, depth + 1)
        if "first" in args or (fdef is not None and "first" in fdef.args):
            n = args.get("first")
            if n is None and fdef is not None and "first" in fdef.args:
                n = fdef.args["first"].default_value
            # an oversized page is refused by the resolver with its own message
            mult = max(1, min(int(n) if isinstance(n, int) else DEFAULT_FIRST, self.max_page))
        elif name == "edges":
            mult = 1  # the connection's page size already counted them
        elif fdef is not None and _is_list(fdef.type):
            mult = LIST_ESTIMATE
        else:
            mult = 1
        return 1 + weight + mult * inner, d

    def args(self, node: FieldNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.arguments or ():
            if a.name.value in _COST_ARGS:
                self.used.update(_variables_in(a.value))
            try:
                out[a.name.value] = value_from_ast_untyped(a.value, dict(self.variables))
            except Exception:  # malformed values are reported by execution
                out[a.name.value] = None
        return out


# The arguments whose values the cost reads (``field`` above).
_COST_ARGS = frozenset({"first", "depth"})


def _variables_in(value: ValueNode) -> Iterator[str]:
    if isinstance(value, VariableNode):
        yield value.name.value
    elif isinstance(value, ListValueNode):
        for v in value.values:
            yield from _variables_in(v)
    elif isinstance(value, ObjectValueNode):
        for f in value.fields:
            yield from _variables_in(f.value)


def _is_list(t: Any) -> bool:
    while hasattr(t, "of_type"):
        if type(t).__name__ == "GraphQLList":
            return True
        t = t.of_type
    return False


def error_code(error: GraphQLError, executed: bool) -> str:
    """The code for an error that has none yet."""
    orig = error.original_error
    if isinstance(orig, GraphQLError) and orig is not error:
        ext = orig.extensions or {}
        if "code" in ext:
            return str(ext["code"])
        orig = orig.original_error
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if orig is None:
        return "BAD_USER_INPUT" if executed else "GRAPHQL_VALIDATION_FAILED"
    if isinstance(orig, ApiError):
        return orig.code
    if isinstance(orig, NotFoundError):
        return "NOT_FOUND"
    if isinstance(orig, StoreUnavailableError):
        return "UNAVAILABLE"
    if isinstance(orig, (InvalidBatchError, ValueError)) and isinstance(orig, RiskGraphError):
        return "BAD_USER_INPUT"
    if isinstance(orig, RiskGraphError):
        return "BAD_REQUEST"
    return "INTERNAL"


class ErrorCodes(SchemaExtension):
    """Give every error a code; replace unexpected ones by a message with the request id."""

    def on_operation(self) -> Iterator[None]:
        self._executed = False
        yield
        result = self.execution_context.result
        if not isinstance(result, (GraphQLExecutionResult, StrawberryExecutionResult)):
            return
        if not result.errors:
            return
        request_id = getattr(self.execution_context.context, "request_id", "")
        result.errors = [self._coded(e, request_id) for e in result.errors]

    def on_execute(self) -> Iterator[None]:
        self._executed = True
        yield

    def _coded(self, error: GraphQLError, request_id: str) -> GraphQLError:
        return coded_error(error, request_id, executed=self._executed)


def coded_error(error: GraphQLError, request_id: str, *, executed: bool) -> GraphQLError:
    """``error`` with its code (see ``error_code``; ``executed``: whether the operation
    reached execution); an unexpected error is logged and its message replaced by one
    quoting the request id. Also for errors raised before the extension's hooks ran."""
    ext = dict(error.extensions or {})
    if "code" in ext:
        return error
    code = error_code(error, executed)
    message = error.message
    if code == "INTERNAL":
        log.error(
            "internal error in a resolver",
            exc_info=error.original_error,
            extra={"path": error.path, "request_id": request_id},
        )
        message = f"internal error; quote request id {request_id} to the operators"
    ext["code"] = code
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions=ext)


class _AliasCounter:
    """Counts the aliased fields under a selection set, those of spread fragments
    included; each fragment is counted once, and a count stops past ``limit``."""

    def __init__(self, doc: DocumentNode, limit: int) -> None:
        self.limit = limit
        self.frags = {d.name.value: d for d in doc.definitions
                      if isinstance(d, FragmentDefinitionNode)}
        self.counted: dict[str, int] = {}
        self.open: set[str] = set()

    def count(self, sel: SelectionSetNode | None) -> int:
        total = 0
        for node in sel.selections if sel is not None else ():
            if isinstance(node, FieldNode):
                total += (node.alias is not None) + self.count(node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                total += self.count(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += self.fragment(node.name.value)
            if total > self.limit:
                return total  # past the limit: the exact figure does not matter
        return total

    def fragment(self, name: str) -> int:
        if name not in self.counted:
            frag = self.frags.get(name)
            if frag is None or name in self.open:
                return 0  # unknown or cyclic: other rules report it
            self.open.add(name)
            self.counted[name] = self.count(frag.selection_set)
            self.open.discard(name)
        return self.counted[name]


def max_aliases_rule(max_aliases: int) -> type[ValidationRule]:
    """A validation rule refusing documents with more than ``max_aliases`` aliased fields,
    counting those a fragment brings each time it is spread. Each fragment is counted
    once and reused, and the count stops past the limit, so a document of chained
    fragments costs a walk of its text, not of its 2**N paths (the rule this replaces
    walked every path, in the event loop)."""

    class MaxAliases(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            doc = context.document
            counter = _AliasCounter(doc, max_aliases)
            total = 0
            for d in doc.definitions:
                if isinstance(d, OperationDefinitionNode):
                    total += counter.count(d.selection_set)
                    if total > max_aliases:
                        context.report_error(GraphQLError(
                            f"more than {max_aliases} aliases; ask for fewer aliased fields"))
                        break

    return MaxAliases
