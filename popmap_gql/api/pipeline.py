"""Our steps in Strawberry's execution pipeline, as one schema extension.

Strawberry runs every request through its extensions' hooks around parsing, validation
and execution; `Pipeline` is the first of them and gives each step what the schema keeps:

- parsing takes the document prepared once per text (`api/documents.py`: the token
  limit, then validation with the depth and alias rules), so Strawberry neither parses
  nor validates again;
- validation adds the request's admission (`api/admission.py`: its variables coerced
  once, and its cost against the limit);
- execution first asks the compiled read path (`api/compiled.py`); when it answers, the
  answer is the result and graphql-core does not run, otherwise the resolvers answer.

Any other extension (tracing, masking, an operation directive) runs around and inside
these steps as Strawberry documents it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, cast

from graphql import DocumentNode, ExecutionResult, OperationType, get_operation_ast
from strawberry.extensions import SchemaExtension

from popmap_gql import observe, tracing
from popmap_gql.api.admission import Admission
from popmap_gql.api.compiled import CompiledReads
from popmap_gql.api.documents import Documents, Prepared

__all__ = ["Pipeline", "PipelineSchema", "admitted_query", "answer"]


class PipelineSchema(Protocol):
    """What the pipeline needs of the schema it runs in (`api/schema.py` PopmapSchema)."""

    documents: Documents
    compiled: CompiledReads
    compiled_reads: bool

    def admit(
        self, prepared: Prepared, operation_name: str | None, variables: dict[str, Any] | None
    ) -> Admission: ...


class Pipeline(SchemaExtension):
    prepared: Prepared
    admission: Admission

    @property
    def schema(self) -> PipelineSchema:
        return cast(PipelineSchema, self.execution_context.schema)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None  # Strawberry refuses a missing query first
        self.prepared = self.schema.documents.prepare(context.query)
        if self.prepared.document is None:  # a syntax error: the request's only error
            raise self.prepared.errors[0]
        context.graphql_document = self.prepared.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        tracing.name_request(context.operation_type.value, context.operation_name)
        if self.prepared.errors:
            context.pre_execution_errors = list(self.prepared.errors)
        else:
            self.admission = self.schema.admit(
                self.prepared, context.operation_name, context.variables
            )
            context.pre_execution_errors = list(self.admission.errors)
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        operation = self.admission.operation
        observe.note_executed()
        with tracing.span("graphql.execute"):
            data = None
            if operation is not None and context.context is not None:
                assert context.graphql_document is not None
                data = await answer(
                    self.schema, context.graphql_document, self.admission, context.context
                )
            if data is not None:
                context.result = ExecutionResult(data=data, errors=None)
            yield


def admitted_query(
    schema: PipelineSchema,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> tuple[DocumentNode, Admission] | None:
    """A valid query within its limits, with its admission; else None (the pipeline then
    reports what is wrong)."""
    prepared = schema.documents.prepare(query)
    if prepared.document is None or prepared.errors:
        return None
    operation = get_operation_ast(prepared.document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    admission = schema.admit(prepared, operation_name, variables)
    return None if admission.errors else (prepared.document, admission)


async def answer(
    schema: PipelineSchema, document: DocumentNode, admission: Admission, context: Any
) -> dict[str, Any] | None:
    """The compiled answer's `data`, or None; who answered, and why the compiled path
    declined, go into the request's facts."""
    assert admission.operation is not None
    data = None
    if not schema.compiled_reads:
        observe.note_declined("off")
    else:
        data = await schema.compiled.answer(document, admission.operation, admission, context)
    observe.note_answered_by("resolvers" if data is None else "compiled")
    return data
