"""History, topics and retained messages of a broker (API)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from brokers import services
from brokers.api.views import BrokerUnreachable
from brokers.client import PublishError
from brokers.models import Broker
from brokers.retained import Incomplete
from history import queries
from history import services as history_services
from history.export import export_csv, export_ndjson
from history.models import StoredMessage, Topic
from history.selectors import retained_as_dict, topic_last_payload
from mqttadmin.api.base import ProductScopedAPIView
from mqttadmin.audit import audit_record
from mqttadmin.lib.payloads import ExactPayload, parsed_json


def _field_error(field: str, exc: ValidationError) -> ApiValidationError:
    """A Django validation error reported against the query parameter it came from."""
    return ApiValidationError({field: exc.messages})


PARSED_PARAMETER = OpenApiParameter(
    "parsed", bool, description="1 adds payload_json, the parsed payload"
)

HISTORY_PARAMETERS = [
    OpenApiParameter("topic", str, description="MQTT filter, e.g. sensors/+/temp"),
    OpenApiParameter("since", OpenApiTypes.DATETIME),
    OpenApiParameter("until", OpenApiTypes.DATETIME),
    OpenApiParameter("search", str, description="Text in the payload or topic"),
]


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    topic = serializers.CharField()
    payload = serializers.CharField(
        help_text="Exactly as received: the text (UTF-8 without NUL), or the bytes "
        "in base64 (payload_encoding)."
    )
    payload_encoding = serializers.ChoiceField(["text", "base64"])
    payload_is_json = serializers.BooleanField(
        help_text="The whole payload is strict JSON (no NaN, Infinity or numbers "
        "beyond a double); never true for a truncated or cut payload."
    )
    payload_json = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Only with ?parsed=1: the parsed payload, null when it is not "
        "strict JSON.",
    )
    payload_size = serializers.IntegerField(help_text="Bytes as received.")
    payload_truncated = serializers.BooleanField(
        help_text="History kept only the first history_payload_max_bytes bytes."
    )
    payload_cut = serializers.BooleanField(
        help_text="This list shows only the first 8,192 characters; the message's "
        "own endpoint and the exports give all that history kept."
    )
    qos = serializers.IntegerField()
    retain = serializers.BooleanField()
    properties = serializers.DictField(
        help_text="MQTT 5 properties; CorrelationData is text when it is "
        "printable UTF-8, otherwise hex:<hex digits>."
    )
    received_at = serializers.DateTimeField()


class MessagesView(ProductScopedAPIView):
    """A broker's message history, newest first, with cursor paging and export.

    A page is bounded in bytes: each payload is cut to its first 8,192 characters
    (`payload_cut`), and a page ends early (with a `next_cursor`) once its topics
    and payloads reach about a million characters. `GET .../messages/{id}/` and
    the CSV/NDJSON exports give whole payloads (as history kept them: see
    `payload_truncated`).
    """

    @extend_schema(
        parameters=[
            *HISTORY_PARAMETERS,
            OpenApiParameter("limit", int, description="1-1000, default 100"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("format", str, enum=["json", "csv", "ndjson"]),
            PARSED_PARAMETER,
        ],
        responses=inline_serializer(
            "MessagePage",
            {
                "results": MessageSerializer(many=True),
                "next_cursor": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request, pk: int) -> Any:
        broker = self.get_scoped_object(Broker, pk=pk)
        query = queries.HistoryQuery.from_params(request.query_params)
        queryset = queries.messages_for(broker, query)
        parsed = queries.parse_flag(request.query_params, "parsed")
        export = request.query_params.get("format", "json")
        if export in ("csv", "ndjson"):
            stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
            stream = (
                export_csv(queryset)
                if export == "csv"
                else export_ndjson(queryset, parsed=parsed)
            )
            response = StreamingHttpResponse(
                stream,
                content_type="text/csv; charset=utf-8"
                if export == "csv"
                else "application/x-ndjson",
            )
            response["Content-Disposition"] = (
                f'attachment; filename="broker-{broker.pk}-messages-{stamp}.{export}"'
            )
            return response
        if export != "json":
            raise ApiValidationError(
                {"format": ["format must be json, csv or ndjson."]}
            )
        limit = queries.parse_limit(request.query_params.get("limit"))
        rows, next_cursor = queries.page_of(
            queries.with_payload_heads(queryset),
            limit,
            request.query_params.get("cursor"),
            budget=queries.PAGE_BUDGET_CHARS,
        )
        return Response(
            {
                "results": [queries.message_as_dict(m, parsed=parsed) for m in rows],
                "next_cursor": next_cursor,
            }
        )

    @extend_schema(
        parameters=HISTORY_PARAMETERS,
        responses=inline_serializer("Deleted", {"deleted": serializers.IntegerField()}),
    )
    def delete(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        query = queries.HistoryQuery.from_params(request.query_params)
        deleted = history_services.history_delete(broker, query)
        audit_record(
            actor=request.user,
            action="broker.history_delete",
            target=broker,
            changes={"deleted": [None, deleted], "topic": [None, query.topic]},
        )
        return Response({"deleted": deleted})


class MessageDetailView(ProductScopedAPIView):
    """One stored message with all of its payload that history kept."""

    @extend_schema(
        operation_id="v1_brokers_message_detail",
        parameters=[PARSED_PARAMETER],
        responses=MessageSerializer,
    )
    def get(self, request: Request, pk: int, message_id: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        parsed = queries.parse_flag(request.query_params, "parsed")
        message = get_object_or_404(
            StoredMessage.objects.filter(broker=broker), pk=message_id
        )
        return Response(queries.message_as_dict(message, parsed=parsed))


class TopicSerializer(serializers.ModelSerializer):
    """A topic with its last value byte-exact (text, or base64 for binary).

    The index keeps the first 4,096 bytes of the last value: a longer one is
    `last_payload_truncated`, its full size unknown. With the context's `parsed`
    the parsed last value comes too (`last_payload_json`, null when not JSON).
    """

    last_payload = serializers.SerializerMethodField()
    last_payload_encoding = serializers.SerializerMethodField()
    last_payload_is_json = serializers.SerializerMethodField()

    class Meta:
        model = Topic
        fields = [
            "id",
            "topic",
            "messages",
            "last_payload",
            "last_payload_encoding",
            "last_payload_is_json",
            "last_payload_truncated",
            "last_seen_at",
            "retained",
            "description",
            "unit",
        ]
        read_only_fields = [
            "topic",
            "messages",
            "last_payload_truncated",
            "last_seen_at",
            "retained",
        ]

    def _exact(self, obj: Topic) -> ExactPayload:
        # Three fields read it: decode and parse each last value once.
        cached: ExactPayload | None = getattr(obj, "_exact_last_payload", None)
        if cached is None:
            cached = topic_last_payload(obj)
            obj._exact_last_payload = cached  # type: ignore[attr-defined]
        return cached

    @extend_schema_field(OpenApiTypes.STR)
    def get_last_payload(self, obj: Topic) -> str:
        return self._exact(obj).text

    def get_last_payload_encoding(self, obj: Topic) -> str:
        return self._exact(obj).encoding

    def get_last_payload_is_json(self, obj: Topic) -> bool:
        return self._exact(obj).is_json

    def to_representation(self, instance: Topic) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if self.context.get("parsed"):
            exact = self._exact(instance)
            value = parsed_json(exact.text) if exact.is_json else None
            data["last_payload_json"] = value.value if value is not None else None
        return data


class TopicsView(ProductScopedAPIView):
    """Topics seen on a broker, with counts and last values."""

    @extend_schema(
        parameters=[
            OpenApiParameter("filter", str, description="MQTT filter"),
            PARSED_PARAMETER,
        ],
        responses=TopicSerializer(many=True),
    )
    def get(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        parsed = queries.parse_flag(request.query_params, "parsed")
        topic_filter = request.query_params.get("filter") or None
        try:
            topics = queries.topics_for(broker, topic_filter)
        except ValidationError as exc:
            raise _field_error("filter", exc) from None
        serializer = TopicSerializer(
            topics[:5000], many=True, context={"parsed": parsed}
        )
        return Response(serializer.data)


class TopicDetailView(ProductScopedAPIView):
    """One topic with its last value; an operator annotates it with a description
    and a unit."""

    @extend_schema(parameters=[PARSED_PARAMETER], responses=TopicSerializer)
    def get(self, request: Request, pk: int, topic_id: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        parsed = queries.parse_flag(request.query_params, "parsed")
        topic = get_object_or_404(Topic, broker=broker, pk=topic_id)
        return Response(TopicSerializer(topic, context={"parsed": parsed}).data)

    @extend_schema(request=TopicSerializer, responses=TopicSerializer)
    def patch(self, request: Request, pk: int, topic_id: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        topic = get_object_or_404(Topic, broker=broker, pk=topic_id)
        serializer = TopicSerializer(topic, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        history_services.topic_annotate(
            actor=request.user,
            topic=topic,
            description=data.get("description", topic.description),
            unit=data.get("unit", topic.unit),
        )
        return Response(TopicSerializer(topic).data)


class RetainedView(ProductScopedAPIView):
    """Retained messages as the broker holds them now; clear one topic or a subtree."""

    @extend_schema(
        parameters=[
            OpenApiParameter("topic", str, description="MQTT filter, default #")
        ],
        responses=inline_serializer(
            "RetainedListing",
            {
                "results": inline_serializer(
                    "Retained",
                    {
                        "topic": serializers.CharField(),
                        "payload": serializers.CharField(),
                        "payload_encoding": serializers.CharField(),
                        "payload_is_json": serializers.BooleanField(),
                        "qos": serializers.IntegerField(),
                    },
                    many=True,
                ),
                "count": serializers.IntegerField(),
                "complete": serializers.BooleanField(
                    help_text="False when messages may be missing: see "
                    "incomplete_reason."
                ),
                "incomplete_reason": serializers.ChoiceField(
                    choices=Incomplete.choices,
                    allow_blank=True,
                    help_text="connection_lost, limit or timeout; empty when complete.",
                ),
                "note": serializers.CharField(
                    help_text="A caveat, e.g. for brokers that do not replay "
                    "retained messages to wildcard subscriptions (RabbitMQ)."
                ),
            },
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        topic_filter = request.query_params.get("topic") or "#"
        try:
            listing = services.broker_retained_list(
                broker=broker, topic_filter=topic_filter
            )
        except ValidationError as exc:
            raise _field_error("topic", exc) from None
        except PublishError as exc:
            raise BrokerUnreachable(str(exc)) from exc
        return Response(
            {
                "results": [
                    retained_as_dict(m.topic, m.payload, m.qos)
                    for m in listing.messages
                ],
                "count": len(listing.messages),
                "complete": listing.complete,
                "incomplete_reason": listing.incomplete,
                "note": listing.note,
            }
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("topic", str, required=True),
            OpenApiParameter("recursive", bool),
        ],
        responses=inline_serializer(
            "RetainedCleared",
            {"cleared": serializers.ListField(child=serializers.CharField())},
        ),
    )
    def delete(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        topic = request.query_params.get("topic", "")
        recursive = request.query_params.get("recursive", "").lower() in (
            "1",
            "true",
            "yes",
        )
        try:
            cleared = services.broker_retained_clear(
                actor=request.user, broker=broker, topic=topic, recursive=recursive
            )
        except ValidationError as exc:
            raise _field_error("topic", exc) from None
        except PublishError as exc:
            raise BrokerUnreachable(str(exc)) from exc
        return Response({"cleared": cleared})
