"""Account security: client addresses, the user's sessions and API tokens, and the
Account page where a user ends sessions and revokes their tokens (the password
change itself is in mqttadmin.accounts).

Sessions are recorded in `UserSession` on login (signal) so a user can list them
without scanning the whole session store; ending one deletes it from the store too.

API tokens (django-rest-knox) are stored as SHA-512 digests: the clear token is
shown once, when it is issued. They are revoked when the user's password changes or
the account is deactivated, whichever way that happens (admin, forms, the
`changepassword` command): a `pre_save`/`post_save` pair on the user model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from knox.models import AuthToken

from mqttadmin.audit import audit_record
from mqttadmin.models import PasswordChangeRequired, UserSession

# A session's "last seen" is written at most this often (seconds): one write a
# minute per session instead of one per request.
LAST_SEEN_INTERVAL = 60
_SEEN_KEY = "_mqttadmin_seen"


def client_ip(request: Any) -> str:
    """The client's address: REMOTE_ADDR, or with MQTTADMIN_TRUSTED_PROXY_COUNT
    proxies in front, the address the outermost trusted proxy saw.

    Each proxy appends the address it received the connection from to
    X-Forwarded-For, so only the last N entries are trustworthy; anything further
    left was written by the client and could be forged.
    """
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR") or "")
    count = settings.MQTTADMIN_TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")
        if part.strip()
    ]
    if not forwarded:
        return remote
    return forwarded[-min(count, len(forwarded))]


def _session_store() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


# --- Recording sessions ---------------------------------------------------------------


@receiver(user_logged_in, dispatch_uid="mqttadmin.security.record_session")
def record_session(
    sender: Any, request: HttpRequest | None, user: Any, **_: Any
) -> None:
    session = getattr(request, "session", None)
    if request is None or session is None:
        return
    if not session.session_key:
        session.save()
    UserSession.objects.update_or_create(
        session_key=session.session_key,
        defaults={
            "user": user,
            "user_agent": str(request.META.get("HTTP_USER_AGENT", ""))[:300],
            "ip_address": client_ip(request) or None,
            "last_seen": timezone.now(),
        },
    )
    session[_SEEN_KEY] = time.time()


@receiver(user_logged_out, dispatch_uid="mqttadmin.security.forget_session")
def forget_session(sender: Any, request: HttpRequest | None, **_: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        UserSession.objects.filter(session_key=key).delete()


class SessionActivityMiddleware:
    """Keeps `UserSession.last_seen` roughly current for logged-in browsers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        session = getattr(request, "session", None)
        if user is not None and user.is_authenticated and session is not None:
            key = session.session_key
            now = time.time()
            if key and now - float(session.get(_SEEN_KEY, 0)) > LAST_SEEN_INTERVAL:
                session[_SEEN_KEY] = now
                UserSession.objects.update_or_create(
                    session_key=key,
                    defaults={"user": user, "last_seen": timezone.now()},
                    create_defaults={
                        "user": user,
                        "user_agent": str(request.META.get("HTTP_USER_AGENT", ""))[
                            :300
                        ],
                        "ip_address": client_ip(request) or None,
                    },
                )
        return self.get_response(request)


# --- Services -----------------------------------------------------------------------


def sessions_of(user: Any) -> list[UserSession]:
    """The user's live sessions; rows whose session expired or vanished are dropped."""
    rows = list(UserSession.objects.filter(user=user))
    store = _session_store()
    live: list[UserSession] = []
    gone: list[int] = []
    for row in rows:
        if store().exists(row.session_key):
            live.append(row)
        else:
            gone.append(row.pk)
    if gone:
        UserSession.objects.filter(pk__in=gone).delete()
    return live


def _session_delete(user_session: UserSession) -> None:
    _session_store()(session_key=user_session.session_key).delete()
    user_session.delete()


def session_end(*, actor: Any, user_session: UserSession) -> None:
    """End one of `actor`'s sessions: the browser using it is logged out."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="auth.session_end",
            target=user_session,
            changes={"ip_address": [user_session.ip_address, None]},
        )
        _session_delete(user_session)


def sessions_end_others(*, actor: Any, keep_key: str | None, audit: bool = True) -> int:
    """End every session of `actor` except `keep_key` (the one making the request).

    One audit entry for the whole action, not one per session; `audit=False` when
    the caller records the action that ended them (a password change)."""
    with transaction.atomic():
        rows = list(
            UserSession.objects.filter(user=actor).exclude(session_key=keep_key or "")
        )
        for user_session in rows:
            _session_delete(user_session)
        if rows and audit:
            audit_record(
                actor=actor,
                action="auth.sessions_end_others",
                target=actor,
                changes={"sessions": [len(rows), 0]},
            )
    return len(rows)


def session_rekey(*, old_key: str | None, new_key: str | None) -> None:
    """The browser's session got a new key (Django cycles it when the password
    changes): its row follows, so the page still lists it as this browser."""
    if old_key and new_key and old_key != new_key:
        UserSession.objects.filter(session_key=old_key).update(session_key=new_key)


def password_change(*, user: Any, new_password: str, keep_key: str | None) -> int:
    """Set `user`'s own new password; their other sessions and their API tokens
    end with the old one. Returns how many other sessions were ended.

    The tokens are deleted here, before the save, so the save's own revocation
    finds none: the change is one audit entry that says what it ended."""
    with transaction.atomic():
        tokens, _ = AuthToken.objects.filter(user=user).delete()
        user.set_password(new_password)
        user.save()
        PasswordChangeRequired.objects.filter(user=user).delete()
        ended = sessions_end_others(actor=user, keep_key=keep_key, audit=False)
        audit_record(
            actor=user,
            action="auth.password_change",
            target=user,
            changes={
                "other_sessions_ended": [None, ended],
                "tokens_revoked": [None, tokens],
            },
        )
    return ended


def token_issue(*, user: Any) -> str:
    """A new API token for `user`. Only its digest is stored: the clear token is
    returned here, once. Beyond MQTTADMIN_TOKENS_PER_USER the oldest are revoked."""
    with transaction.atomic():
        _instance, token = AuthToken.objects.create(user=user, expiry=None)
        keep = AuthToken.objects.filter(user=user).order_by("-created", "-pk")
        stale = list(
            keep.values_list("pk", flat=True)[settings.MQTTADMIN_TOKENS_PER_USER :]
        )
        if stale:
            AuthToken.objects.filter(pk__in=stale).delete()
        audit_record(actor=user, action="auth.token_issue", target=user)
    return token


def token_revoke(*, actor: Any, reason: str = "") -> bool:
    """Delete every API token of `actor`; clients using them get 401 from now on."""
    with transaction.atomic():
        deleted, _ = AuthToken.objects.filter(user=actor).delete()
        if deleted:
            audit_record(
                actor=actor,
                action="auth.token_revoke",
                target=actor,
                changes={"reason": [None, reason]} if reason else None,
            )
    return bool(deleted)


# --- Tokens die with the password -----------------------------------------------------

_REVOKE_FLAG = "_mqttadmin_revoke_tokens"


@receiver(
    pre_save,
    sender=settings.AUTH_USER_MODEL,
    dispatch_uid="mqttadmin.security.note_credential_change",
)
def note_credential_change(
    sender: Any, instance: Any, update_fields: Any = None, **_: Any
) -> None:
    """Mark the user when this save changes the password or deactivates them."""
    if instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. last_login on every login: no query
    stored = (
        sender._default_manager.filter(pk=instance.pk)
        .values("password", "is_active")
        .first()
    )
    if stored is None:
        return
    deactivated = stored["is_active"] and not instance.is_active
    password_changed = stored["password"] != instance.password
    # Django re-hashes a password with a newer hasher when it checks it at login
    # (save(update_fields=["password"]) with no new raw password): same password.
    rehash = (
        password_changed
        and update_fields is not None
        and set(update_fields) == {"password"}
        and getattr(instance, "_password", None) is None
        and is_password_usable(instance.password)
        and is_password_usable(stored["password"])
    )
    if deactivated or (password_changed and not rehash):
        setattr(
            instance,
            _REVOKE_FLAG,
            "deactivated" if deactivated else "password changed",
        )


@receiver(
    post_save,
    sender=settings.AUTH_USER_MODEL,
    dispatch_uid="mqttadmin.security.revoke_tokens_on_credential_change",
)
def revoke_tokens_on_credential_change(sender: Any, instance: Any, **_: Any) -> None:
    reason = getattr(instance, _REVOKE_FLAG, None)
    if reason:
        delattr(instance, _REVOKE_FLAG)
        token_revoke(actor=instance, reason=reason)


# --- The Account page -----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def account_security(request: HttpRequest) -> HttpResponse:
    """The Account page: password, sessions and API tokens; POST ends one session
    or revokes the tokens."""
    current_key = request.session.session_key
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "end":
            user_session = get_object_or_404(
                UserSession, user=request.user, pk=request.POST.get("session") or 0
            )
            session_end(actor=request.user, user_session=user_session)
            if user_session.session_key == current_key:
                return redirect(settings.LOGIN_URL)
            messages.success(request, _("The session was ended."))
        elif action == "revoke-token":
            if token_revoke(actor=request.user):
                messages.success(request, _("Your API tokens were revoked."))
            else:
                messages.info(request, _("You have no API token."))
        else:
            return HttpResponseBadRequest(
                _("action must be one of: end, revoke-token.")
            )
        return redirect("account-security")
    return render(
        request,
        "mqttadmin/account_security.html",
        {
            "sessions": sessions_of(request.user),
            "current_key": current_key,
            "tokens": AuthToken.objects.filter(user=request.user).order_by("-created"),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def account_sessions_end_others(request: HttpRequest) -> HttpResponse:
    """Asks before ending the user's other sessions (GET), then ends them (POST)."""
    current_key = request.session.session_key
    if request.method == "POST":
        count = sessions_end_others(actor=request.user, keep_key=current_key)
        if count:
            messages.success(request, _("Other sessions ended: %d.") % count)
        else:
            messages.info(request, _("There were no other sessions to end."))
        return redirect("account-security")
    others = [s for s in sessions_of(request.user) if s.session_key != current_key]
    return render(
        request, "mqttadmin/account_sessions_end_others.html", {"others": others}
    )
