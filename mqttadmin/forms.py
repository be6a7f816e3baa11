"""Forms of the foundation pages."""

from django import forms
from django.utils.translation import gettext_lazy as _

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
