"""Journey: an admin opens the product list and a product's page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import log_in
from tests.factories import PASSWORD, make_product, make_user

pytestmark = [pytest.mark.browser]


def test_admin_opens_products_and_a_product(journey: Any) -> None:
    admin = make_user("ada")
    product = make_product("Plant", admin=admin)
    log_in(journey.page, "ada", PASSWORD)
    journey.step("logged in")
    journey.page.get_by_role("link", name="Products").click()
    journey.step("products", title="Products")
    journey.page.get_by_role("link", name=product.name).first.click()
    journey.step("product", title=product.name)
    journey.assert_clean()
