"""The subscription editor's words: the template examples render, the dry run shows
once after an error, actions count from 1 everywhere, errors name fields by label."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from brokers.forms import ActionFormSet, SubscriptionEditForm
from brokers.views.subscriptions import _apply_subscription_errors
from tests.brokers.test_pages_subscriptions import (
    action_data,
    management,
    subscription_data,
)
from tests.clients import htmx_swap, logged_in
from tests.factories import make_broker, make_subscription

pytestmark = pytest.mark.django_db


def test_the_template_help_shows_its_examples(world: dict) -> None:
    broker = make_broker(world["product"])
    html = (
        logged_in(world["users"]["operator"])
        .get(f"/brokers/{broker.pk}/subscriptions/new/")
        .content.decode()
    )
    assert "<code>{{ payload.temp }}</code>" in html
    assert "<code>{{ topic }}</code>" in html
    assert "templates: , ," not in html


def test_an_error_brings_the_dry_run_back_once(world: dict) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(broker, name="Temps", topic_filter="sensors/#")
    html = (
        logged_in(world["users"]["operator"])
        .post(
            f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/",
            subscription_data(topic_filter="a/#/b"),
            **htmx_swap("subscription-editor"),
        )
        .content.decode()
    )
    assert "must be the last level" in html
    # The answer replaces #subscription-editor whole: the dry run is inside it.
    assert html.lstrip().startswith('<div id="subscription-editor"')
    assert html.rstrip().endswith("</div>")
    assert html.count('id="dry-run-title"') == 1
    assert html.index('id="dry-run-title"') < html.rindex("</div>")


def test_errors_without_a_form_count_actions_from_one_and_use_labels() -> None:
    form = SubscriptionEditForm(subscription_data())
    formset = ActionFormSet(
        {**management(1), **action_data(0, "webhook", url="https://x.example/")},
        prefix="actions",
    )
    assert form.is_valid() and formset.is_valid()
    kept = list(formset.forms)
    _apply_subscription_errors(
        form,
        kept,
        ValidationError(
            {
                "actions": [
                    "actions[3].timeout_s: too long",
                    "actions[0].headers: refused",
                ],
                "filter": ["bad"],
            }
        ),
    )
    top = " ".join(str(error) for error in form.non_field_errors())
    assert "Action 4 · Timeout (s): too long" in top
    assert "Topic filter: bad" in top
    assert "actions[" not in top and "action 0" not in top.lower()
    assert kept[0].errors["headers"] == ["refused"]
