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

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
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
    ValueNode,
    VariableNode,
    get_named_type,
    value_from_ast_untyped,
)
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
        op = _operation(doc, ec.operation_name) if doc is not None else None
        if op is not None:
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
        cost, depth = measure.selection(root, op.selection_set, 1)
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


def _operation(doc: Any, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return ops[0] if len(ops) == 1 else None
    return next((o for o in ops if o.name and o.name.value == name), None)


class _Measure:
    def __init__(self, schema: GraphQLSchema, frags: dict[str, FragmentDefinitionNode],
                 variables: Mapping[str, Any], max_page: int) -> None:
        self.schema, self.frags, self.variables = schema, frags, variables
        self.max_page = max_page
        self.used: set[str] = set()  # variables whose values the cost depends on

    def selection(
        self, parent: GraphQLNamedType | None, sel: SelectionSetNode | None, depth: int
    ) -> tuple[int, int]:
        """(cost, depth) of a selection set under ``parent``."""
        if sel is None:
            return 0, depth - 1
        cost, deepest = 0, depth - 1
        for node in sel.selections:
            if isinstance(node, FieldNode):
                c, d = self.field(parent, node, depth)
            elif isinstance(node, InlineFragmentNode):
                t = parent
                if node.type_condition is not None:
                    t = self.schema.get_type(node.type_condition.name.value)
                c, d = self.selection(t, node.selection_set, depth)
            elif isinstance(node, FragmentSpreadNode):
                frag = self.frags.get(node.name.value)
                if frag is None:
                    continue
                t = self.schema.get_type(frag.type_condition.name.value)
                c, d = self.selection(t, frag.selection_set, depth)
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
            except Exception:  # noqa: BLE001 - malformed values are reported by execution
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
        ext = dict(error.extensions or {})
        if "code" in ext:
            return error
        code = error_code(error, self._executed)
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
