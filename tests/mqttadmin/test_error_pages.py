"""The portal's 403 and 404 pages: styled like the rest, with the reason and a way
back; a refusal is logged as one line, without a traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils.translation import gettext_lazy

from mqttadmin.errors import permission_denied
from tests.factories import make_broker, make_product, make_user

pytestmark = pytest.mark.django_db


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_viewer_refused_a_write_gets_the_reason_and_a_way_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vera = make_user("vera")
    broker = make_broker(make_product("Demo", viewer=vera))
    client = logged_in(vera)
    with caplog.at_level(logging.WARNING):
        response = client.get(
            reverse("brokers:edit", args=[broker.pk]),
            HTTP_REFERER=f"http://testserver/brokers/{broker.pk}/",
        )
    assert response.status_code == 403
    html = response.content.decode()
    assert "This needs the operator role in Demo." in html
    assert 'class="topbar"' in html  # the whole page, not Django's bare text
    assert f'href="http://testserver/brokers/{broker.pk}/"' in html
    refusals = [r for r in caplog.records if "Forbidden" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].exc_info is None


def test_unknown_page_is_the_portals_404_with_a_way_back() -> None:
    client = logged_in(make_user("ada"))
    response = client.get("/brokers/999999/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'class="topbar"' in html
    assert "Nothing is at <code>/brokers/999999/</code>" in html
    # No referer: back to the overview.
    assert f'href="{reverse("dashboard:overview")}" role="button"' in html


def test_way_back_never_leads_off_the_site() -> None:
    vera = make_user("vera")
    broker = make_broker(make_product("Demo", viewer=vera))
    response = logged_in(vera).get(
        reverse("brokers:edit", args=[broker.pk]), HTTP_REFERER="https://evil.test/"
    )
    assert response.status_code == 403
    assert "evil.test" not in response.content.decode()


@pytest.mark.parametrize(
    ("exception", "shown"),
    [
        (PermissionDenied(), "Your role does not allow this."),
        (PermissionDenied(gettext_lazy("Only superusers create products.")), None),
    ],
)
def test_the_403_page_says_a_reason_even_when_none_was_given(
    rf: RequestFactory, exception: PermissionDenied, shown: str | None
) -> None:
    request = rf.get("/somewhere/")
    request.user = AnonymousUser()
    response = permission_denied(request, exception)
    assert response.status_code == 403
    expected = shown or str(exception.args[0])
    assert f'<p id="error-reason" class="error-reason">{expected}</p>' in (
        response.content.decode()
    )
