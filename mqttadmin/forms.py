"""Forms of the foundation pages."""

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils.translation import gettext_lazy as _

from mqttadmin import services
from mqttadmin.models import Product
from mqttadmin.roles import Role


class ProductForm(forms.ModelForm):
    slug = forms.SlugField(
        required=False, max_length=60, help_text=_("Left empty, made from the name.")
    )

    class Meta:
        model = Product
        fields = ["name", "slug", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class MemberCreateForm(forms.Form):
    """A new user for the product, who gets in by one-time password or invite."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text=_("Letters, digits and @ . + - _ only."),
    )
    email = forms.EmailField(label=_("E-mail"), required=False)
    role = forms.ChoiceField(
        choices=[(v, label) for v, label in Role.choices if v != Role.SERVICE],
        initial=Role.VIEWER,
    )
    access = forms.ChoiceField(
        label=_("How they get in"),
        choices=[
            (services.ACCESS_INVITE, _("Invite link: they choose their password")),
            (
                services.ACCESS_PASSWORD,
                _("One-time password: changed at their first login"),
            ),
        ],
        initial=services.ACCESS_INVITE,
        help_text=_("Either is shown to you once, right after you create the user."),
    )
