"""API authentication: obtaining and revoking tokens, the user's sessions, throttles."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import parsers, permissions, renderers, serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mqttadmin import security
from mqttadmin.api.parsers import BoundedJSONParser
from mqttadmin.api.throttles import AnonymousRateThrottle, TokenRateThrottle
from mqttadmin.models import PasswordChangeRequired, UserSession


class UserSessionSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField()

    class Meta:
        model = UserSession
        fields = [
            "id",
            "user_agent",
            "ip_address",
            "created_at",
            "last_seen",
            "current",
        ]

    def get_current(self, obj: UserSession) -> bool:
        request = self.context.get("request")
        session = getattr(request, "session", None) if request else None
        return bool(session is not None and session.session_key == obj.session_key)


def _locked_out() -> Response:
    return Response(
        {
            "detail": _(
                "Too many failed logins for this username from your address; "
                "try again later."
            )
        },
        status=status.HTTP_429_TOO_MANY_REQUESTS,
    )


class TokenRequestSerializer(AuthTokenSerializer):
    """DRF's token request with the account model's length limits: a longer name
    cannot be anybody's, and django-axes could not record the failed attempt."""

    username = serializers.CharField(
        label=_l("Username"), write_only=True, max_length=150
    )
    password = serializers.CharField(
        label=_l("Password"),
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        max_length=4096,
    )


@extend_schema(
    request=inline_serializer(
        "TokenRequest",
        {
            "username": serializers.CharField(max_length=150),
            "password": serializers.CharField(max_length=4096),
        },
    ),
    responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}),
)
class TokenView(APIView):
    """POST: exchange a username and password for a new API token, shown this once
    (only its digest is stored; failed attempts count towards the login lockout).
    DELETE: revoke the caller's tokens."""

    throttle_classes = [TokenRateThrottle, AnonymousRateThrottle]
    parser_classes = [parsers.FormParser, parsers.MultiPartParser, BoundedJSONParser]
    renderer_classes = [renderers.JSONRenderer]
    serializer_class = TokenRequestSerializer

    def get_serializer(self, *args: Any, **kwargs: Any) -> TokenRequestSerializer:
        kwargs["context"] = {"request": self.request, "view": self}
        return self.serializer_class(*args, **kwargs)

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "DELETE":
            return [permissions.IsAuthenticated()]
        return []

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            # django-axes marks the request when this failure locked the user out
            # (or when they already were): say so instead of "wrong password".
            if getattr(request, "axes_locked_out", False) or _is_locked(request):
                return _locked_out()
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        user = serializer.validated_data["user"]
        # A one-time password lets its user choose their own, nothing more.
        if PasswordChangeRequired.objects.filter(user=user).exists():
            return Response(
                {
                    "detail": _(
                        "Change your one-time password first: /account/password/."
                    )
                },
                status=status.HTTP_403_FORBIDDEN,
            )
        token = security.token_issue(user=user)
        return Response({"token": token})

    @extend_schema(
        request=None, responses={204: None}, operation_id="auth_token_revoke"
    )
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        security.token_revoke(actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _is_locked(request: Request) -> bool:
    from axes.handlers.proxy import AxesProxyHandler

    username = request.data.get("username") if hasattr(request.data, "get") else None
    return bool(username) and AxesProxyHandler.is_locked(
        request, {"username": str(username)}
    )


class SessionListView(APIView):
    """GET: the caller's browser sessions. DELETE: end all of them except the one
    making the request (all of them when called with a token)."""

    @extend_schema(responses=UserSessionSerializer(many=True))
    def get(self, request: Request) -> Response:
        rows = security.sessions_of(request.user)
        return Response(
            UserSessionSerializer(rows, many=True, context={"request": request}).data
        )

    @extend_schema(
        request=None,
        operation_id="auth_sessions_end_others",
        responses=inline_serializer(
            "SessionsEnded", {"ended": serializers.IntegerField()}
        ),
    )
    def delete(self, request: Request) -> Response:
        session = getattr(request, "session", None)
        keep = (
            session.session_key
            if session is not None and request.auth is None
            else None
        )
        ended = security.sessions_end_others(actor=request.user, keep_key=keep)
        return Response({"ended": ended})


class SessionDetailView(APIView):
    """DELETE: end one of the caller's sessions."""

    @extend_schema(request=None, responses={204: None}, operation_id="auth_session_end")
    def delete(self, request: Request, pk: int) -> Response:
        user_session = get_object_or_404(UserSession, user=request.user, pk=pk)
        security.session_end(actor=request.user, user_session=user_session)
        return Response(status=status.HTTP_204_NO_CONTENT)
