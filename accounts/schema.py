"""drf-spectacular: describe ``Authorization: Api-Key <key>``, and the request bodies that
refuse unknown fields, in the OpenAPI document."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A service API key: `Authorization: Api-Key <key>` "
            "(create one with `manage.py create_api_key`).",
        }


class JWTAuthenticationScheme(SimpleJWTScheme):
    """drf-spectacular's Bearer scheme for simplejwt's class, on our subclass of it (which
    only words an expired token's 401 apart): the same ``jwtAuth``."""

    target_class = "accounts.authentication.JWTAuthentication"


class UnknownFieldsRefusedSchema(OpenApiSerializerExtension):
    """``additionalProperties: false`` on the request body of every serializer that refuses
    unknown fields: a body the schema allows is then one the API takes (schemathesis, and
    clients generated from the schema, sent extra properties the API answered 400)."""

    target_class = "accounts.api.serializers.UnknownFieldsRefused"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema
