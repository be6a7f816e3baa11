"""A user's own password: the change page, the forced change after a one-time
password, and invite links where a new user chooses their first password.

Invite links are Django's password-reset tokens under their own salt: signed with
the secret key, expiring after PASSWORD_RESET_TIMEOUT, and single-use because the
token hashes the user's password, which accepting the invite changes. A reset
token is therefore never an invite token, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.contrib.auth.views import PasswordResetConfirmView
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from mqttadmin.audit import audit_record
from mqttadmin.models import PasswordChangeRequired
from mqttadmin.security import password_change, session_rekey

# Set on login when the user still has an admin's one-time password; a session key
# so the middleware asks the database nothing on each request.
MUST_CHANGE_KEY = "_mqttadmin_must_change_password"


class InviteTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "mqttadmin.accounts.InviteTokenGenerator"


invite_tokens = InviteTokenGenerator()


def invite_path(user: Any) -> str:
    """The path of `user`'s invite link (valid until used or expired)."""
    return reverse(
        "account-invite",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": invite_tokens.make_token(user),
        },
    )


@receiver(user_logged_in, dispatch_uid="mqttadmin.accounts.note_forced_change")
def note_forced_change(
    sender: Any, request: HttpRequest | None, user: Any, **_: Any
) -> None:
    session = getattr(request, "session", None)
    if (
        session is not None
        and PasswordChangeRequired.objects.filter(user=user).exists()
    ):
        session[MUST_CHANGE_KEY] = True


class PasswordChangeRequiredMiddleware:
    """Until a user replaces an admin's one-time password, every page but the
    password page and logging out sends them to the password page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if (
            session is not None
            and session.get(MUST_CHANGE_KEY)
            and user is not None
            and user.is_authenticated
            and request.path not in (reverse("account-password"), reverse("logout"))
            and not request.path.startswith(settings.STATIC_URL)
        ):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {"detail": _("Change your one-time password first.")}, status=403
                )
            return redirect("account-password")
        return self.get_response(request)


@login_required
@require_http_methods(["GET", "POST"])
def account_password(request: HttpRequest) -> HttpResponse:
    """Change your own password: other sessions and your API tokens end."""
    user: Any = request.user  # logged in: login_required
    forced = bool(request.session.get(MUST_CHANGE_KEY))
    form = PasswordChangeForm(user, request.POST or None)
    if forced:
        form.fields["old_password"].label = _("One-time password")
    if request.method == "POST" and form.is_valid():
        old_key = request.session.session_key
        ended = password_change(
            user=user,
            new_password=form.cleaned_data["new_password1"],
            keep_key=old_key,
        )
        # Keeps this browser logged in (the session's hash follows the password);
        # it also gives the session a new key, which its row must follow.
        update_session_auth_hash(request, user)
        session_rekey(old_key=old_key, new_key=request.session.session_key)
        request.session.pop(MUST_CHANGE_KEY, None)
        messages.success(
            request,
            _(
                "Your password was changed. Other sessions ended: %d; "
                "API tokens revoked."
            )
            % ended,
        )
        return redirect("account-security")
    return render(
        request,
        "mqttadmin/account_password.html",
        {"form": form, "forced": forced},
    )


class InviteAcceptView(PasswordResetConfirmView):
    """The invitee opens their link, chooses a password and is logged in."""

    template_name = "registration/invite_accept.html"
    token_generator = invite_tokens
    form_class = SetPasswordForm
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy(settings.LOGIN_REDIRECT_URL)
    reset_url_token = "set-password"  # noqa: S105 (a URL segment, not a secret)

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(actor=form.user, action="auth.invite_accept", target=form.user)
        messages.success(self.request, _("Welcome! Your password is set."))
        return response
