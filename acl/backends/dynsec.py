"""The Dynamic Security plugin backend: JSON commands over MQTT with admin credentials.

Requests go to `$CONTROL/dynamic-security/v1`; every subscriber of
`$CONTROL/dynamic-security/v1/response` sees every reply, so replies are matched by
`correlationData`. The plugin's errors are passed on verbatim.

Mapping of a portal rule to the plugin's ACLs (its `priority` passes through):
read -> subscribePattern + publishClientReceive; write -> publishClientSend;
readwrite -> all three; deny -> the same three with allow false. A user's roles are
the client's roles; a disabled user is a disabled client (which kicks it). The
management (admin) client and its roles are never touched.

Limits: the plugin takes plain passwords only, so a password reaches it when it is
set and never later (a sync cannot restore one; it says so). Mosquitto 2.0's plugin
takes %u/%c in ACL topics literally: such rules are left out there and reported.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import paho.mqtt.client as mqtt
from django.utils.translation import gettext as _
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from acl.backends.base import (
    ApplyError,
    Change,
    DesiredState,
    Drift,
    RoleSpec,
    SyncOutcome,
    UserSpec,
)
from acl.choices import Access
from brokers.client import (
    ConnectionSettings,
    describe_connack,
    side_client,
)
from mqttadmin.lib.payloads import parse_json

REQUEST_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
# A listing of thousands of clients is megabytes; deeper or larger is not a reply.
DYNSEC_RESPONSE_BYTES = 64 * 1024 * 1024
SUBSCRIBE_PATTERN = "subscribePattern"
RECEIVE = "publishClientReceive"
SEND = "publishClientSend"
ACL_TYPES: dict[str, tuple[str, ...]] = {
    Access.READ: (SUBSCRIBE_PATTERN, RECEIVE),
    Access.WRITE: (SEND,),
    Access.READWRITE: (SUBSCRIBE_PATTERN, RECEIVE, SEND),
    Access.DENY: (SUBSCRIBE_PATTERN, RECEIVE, SEND),
}
CLIENT_NOT_FOUND = "Client not found"
ROLE_NOT_FOUND = "Role not found"
PATTERN_NOTE = (
    "role {role}: this broker's Dynamic Security plugin (Mosquitto 2.0) takes %u and "
    "%c literally, so the rules on {topics} were left out; use the files backend or "
    "Mosquitto 2.1 for them"
)


class DynsecCommandError(ApplyError):
    """The plugin answered a command with an error (kept verbatim)."""

    def __init__(self, command: dict[str, Any], error: str) -> None:
        self.command = command.get("command", "")
        self.error = error
        name = command.get("username") or command.get("rolename") or ""
        target = f" {name}" if name else ""
        super().__init__(f"{self.command}{target}: {error}")


def role_acls(role: RoleSpec) -> list[dict[str, Any]]:
    """The plugin's ACL list for a role, in the portal's rule order."""
    return [
        {
            "acltype": acltype,
            "topic": rule.topic,
            "priority": rule.priority,
            "allow": rule.access != Access.DENY,
        }
        for rule in role.rules
        for acltype in ACL_TYPES[rule.access]
    ]


def _acl_key(acl: dict[str, Any]) -> tuple[str, str, bool, int]:
    return (
        str(acl.get("acltype")),
        str(acl.get("topic")),
        bool(acl.get("allow")),
        int(acl.get("priority") or 0),
    )


def _acl_set(acls: Iterable[dict[str, Any]]) -> set[tuple[str, str, bool, int]]:
    return {_acl_key(acl) for acl in acls}


def _client_roles(client: dict[str, Any]) -> list[str]:
    return sorted(r.get("rolename", "") for r in client.get("roles") or [])


def admin_settings(managed: Any) -> ConnectionSettings:
    """The broker's connection settings with the management credentials."""
    broker = managed.broker
    overrides: dict[str, Any] = {}
    if managed.management_username and managed.management_password_moved():
        raise ApplyError(
            _(
                "The stored admin password was entered while the broker pointed "
                "elsewhere (its host, port or TLS settings changed since); enter "
                "the admin password again on the Users & ACL settings."
            )
        )
    if managed.management_username:
        overrides["username"] = managed.management_username
        overrides["password"] = managed.management_password
    return ConnectionSettings.from_broker(broker, **overrides)


class DynsecSession:
    """One admin connection to the plugin; `run()` sends commands and waits for
    their replies (bounded by `timeout`)."""

    def __init__(self, settings: ConnectionSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._prefix = os.urandom(4).hex()
        self._counter = 0
        self._replies: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._client: mqtt.Client | None = None

    def __enter__(self) -> DynsecSession:
        settings = self.settings
        connected = threading.Event()
        subscribed = threading.Event()
        state: dict[str, Any] = {}

        def on_connect(
            client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
        ) -> None:
            state["reason"] = reason
            connected.set()

        def on_subscribe(
            client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
        ) -> None:
            state["granted"] = list(codes)
            subscribed.set()

        def on_message(
            client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
        ) -> None:
            # Runs on the network thread: parse, file the replies, return.
            # Bounded parse: anyone allowed to publish on the response topic
            # could send deep JSON, which must not kill the network thread.
            parsed = parse_json(message.payload, max_bytes=DYNSEC_RESPONSE_BYTES)
            body = None if parsed is None else parsed.value
            if not isinstance(body, dict):
                return
            responses = body.get("responses") or []
            if not isinstance(responses, list):
                return
            with self._cond:
                for response in responses:
                    if not isinstance(response, dict):
                        continue
                    key = str(response.get("correlationData", ""))
                    if key.startswith(self._prefix):
                        self._replies[key] = response
                self._cond.notify_all()

        client, kwargs = side_client(settings, "ds")
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        deadline = time.monotonic() + self.timeout
        try:
            client.connect(**kwargs)
        except OSError as exc:
            raise ApplyError(
                f"cannot connect to {settings.host}:{settings.port}: {exc}"
            ) from exc
        client.loop_start()
        self._client = client
        try:
            if not connected.wait(max(0.0, deadline - time.monotonic())):
                raise ApplyError("no CONNACK from the broker")
            reason = state["reason"]
            if reason.is_failure:
                raise ApplyError(
                    "the broker refused the management connection: "
                    + describe_connack(reason, settings)[1]
                )
            client.subscribe(RESPONSE_TOPIC, qos=1)
            if not subscribed.wait(max(0.0, deadline - time.monotonic())):
                raise ApplyError("the broker did not acknowledge the subscription")
            if any(_refused(code) for code in state["granted"]):
                raise ApplyError(
                    f"the management user may not subscribe to {RESPONSE_TOPIC}"
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; their replies, in order (errors included)."""
        if not commands:
            return []
        assert self._client is not None, "use the session as a context manager"
        keys = []
        sent = []
        for command in commands:
            self._counter += 1
            key = f"{self._prefix}-{self._counter}"
            keys.append(key)
            sent.append({**command, "correlationData": key})
        info = self._client.publish(
            REQUEST_TOPIC, json.dumps({"commands": sent}), qos=1
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ApplyError(f"sending commands failed: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not all(key in self._replies for key in keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApplyError(
                        "no answer from the Dynamic Security plugin within "
                        f"{self.timeout:g}s: is the plugin loaded, and may the "
                        f"management user publish to {REQUEST_TOPIC}?"
                    )
                self._cond.wait(left)
            return [self._replies.pop(key) for key in keys]

    def check(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Like run(), raising on the first command the plugin refused."""
        replies = self.run(commands)
        for command, reply in zip(commands, replies, strict=True):
            if reply.get("error"):
                raise DynsecCommandError(command, str(reply["error"]))
        return replies

    @cached_property
    def fills_patterns(self) -> bool:
        """Whether the plugin fills %u/%c in ACL topics. Mosquitto 2.0's takes them
        literally (seen on 2.0.11); getDetails, which 2.0 lacks, tells them apart."""
        reply = self.run([{"command": "getDetails"}])[0]
        return reply.get("error") != "Unknown command"

    def get_client(self, username: str) -> dict[str, Any] | None:
        return self.get_many([username], [])[0].get(username)

    def get_role(self, name: str) -> dict[str, Any] | None:
        return self.get_many([], [name])[1].get(name)

    def get_many(
        self, usernames: list[str], rolenames: list[str]
    ) -> tuple[dict[str, dict[str, Any] | None], dict[str, dict[str, Any] | None]]:
        """getClient/getRole for many names in one round trip; None = not there."""
        commands = [{"command": "getClient", "username": u} for u in usernames] + [
            {"command": "getRole", "rolename": r} for r in rolenames
        ]
        replies = self.run(commands)
        clients: dict[str, dict[str, Any] | None] = {}
        roles: dict[str, dict[str, Any] | None] = {}
        for command, reply in zip(commands, replies, strict=True):
            error = reply.get("error")
            if command["command"] == "getClient":
                if error and error != CLIENT_NOT_FOUND:
                    raise DynsecCommandError(command, str(error))
                clients[command["username"]] = (
                    None if error else (reply.get("data") or {}).get("client") or {}
                )
            else:
                if error and error != ROLE_NOT_FOUND:
                    raise DynsecCommandError(command, str(error))
                roles[command["rolename"]] = (
                    None if error else (reply.get("data") or {}).get("role") or {}
                )
        return clients, roles

    def list_names(self) -> tuple[list[str], list[str]]:
        """Every client username and role name on the broker."""
        listed = self.check(
            [
                {"command": "listClients", "verbose": False},
                {"command": "listRoles", "verbose": False},
            ]
        )
        clients = [
            c if isinstance(c, str) else c.get("username", "")
            for c in (listed[0].get("data") or {}).get("clients", [])
        ]
        roles = [
            r if isinstance(r, str) else r.get("rolename", "")
            for r in (listed[1].get("data") or {}).get("roles", [])
        ]
        return clients, roles


def _refused(code: Any) -> bool:
    if isinstance(code, ReasonCode):
        return code.is_failure
    return int(code) >= 0x80


class DynsecBackend:
    """Applies users and roles as Dynamic Security clients and roles."""

    def __init__(self, managed: Any, timeout: float = 10.0) -> None:
        self.managed = managed
        self.timeout = timeout
        self.settings = admin_settings(managed)
        # Problems that did not stop the rest from being applied (reported after).
        self.notes: list[str] = []

    @property
    def admin_username(self) -> str:
        return self.settings.username

    def session(self) -> DynsecSession:
        return DynsecSession(self.settings, self.timeout)

    # --- Protection of the management account ------------------------------------

    def _protected_roles(self, session: DynsecSession) -> set[str]:
        """Roles of the management client: changing them could lock the portal out."""
        if not self.admin_username:
            return set()
        admin = session.get_client(self.admin_username)
        return set(_client_roles(admin)) if admin else set()

    def _guard(self, state: DesiredState, protected: set[str]) -> None:
        if self.admin_username and state.user(self.admin_username):
            raise ApplyError(
                f"{self.admin_username} is the broker's management user: the portal "
                "does not manage it as an MQTT user"
            )
        clash = sorted(protected & {role.name for role in state.roles})
        if clash:
            raise ApplyError(
                f"role {', '.join(clash)} belongs to the management user on the "
                "broker: rename the portal's role"
            )

    # --- Bringing one role or client in line --------------------------------------

    def _role_acls(self, session: DynsecSession, role: RoleSpec) -> list[dict]:
        """The role's ACLs this plugin can honour; pattern rules are left out (and
        reported) where the plugin would take %u/%c literally."""
        patterns = [rule.topic for rule in role.rules if rule.is_pattern]
        if not patterns or session.fills_patterns:
            return role_acls(role)
        note = PATTERN_NOTE.format(role=role.name, topics=", ".join(patterns))
        if note not in self.notes:
            self.notes.append(note)
        kept = tuple(rule for rule in role.rules if not rule.is_pattern)
        return role_acls(RoleSpec(role.name, kept))

    def _ensure_role(
        self, session: DynsecSession, role: RoleSpec, current: dict[str, Any] | None
    ) -> None:
        acls = self._role_acls(session, role)
        if current is None:
            session.check(
                [{"command": "createRole", "rolename": role.name, "acls": acls}]
            )
        elif _acl_set(current.get("acls") or []) != _acl_set(acls):
            # modifyRole replaces the whole ACL list in one step.
            session.check(
                [{"command": "modifyRole", "rolename": role.name, "acls": acls}]
            )

    def _ensure_client(
        self,
        session: DynsecSession,
        user: UserSpec,
        current: dict[str, Any] | None,
        password: str | None,
    ) -> None:
        roles = [{"rolename": name} for name in user.roles]
        if current is None:
            create: dict[str, Any] = {
                "command": "createClient",
                "username": user.username,
                "roles": roles,
            }
            if password:
                create["password"] = password
            if user.client_id:
                create["clientid"] = user.client_id
            commands = [create]
            if not user.enabled:
                commands.append({"command": "disableClient", "username": user.username})
            session.check(commands)
            return
        commands = []
        # Only what differs: each of these kicks a connected client.
        if _client_roles(current) != sorted(user.roles):
            commands.append(
                {"command": "modifyClient", "username": user.username, "roles": roles}
            )
        if (current.get("clientid") or "") != user.client_id:
            set_id: dict[str, Any] = {
                "command": "setClientId",
                "username": user.username,
            }
            if user.client_id:
                set_id["clientid"] = user.client_id
            commands.append(set_id)
        if password:
            commands.append(
                {
                    "command": "setClientPassword",
                    "username": user.username,
                    "password": password,
                }
            )
        if bool(current.get("disabled")) != (not user.enabled):
            commands.append(
                {
                    "command": "enableClient" if user.enabled else "disableClient",
                    "username": user.username,
                }
            )
        session.check(commands)

    def _ensure_roles_of(
        self, session: DynsecSession, state: DesiredState, names: Iterable[str]
    ) -> None:
        """Create (or fix) the roles a client is about to reference."""
        wanted = [role for name in names if (role := state.role(name)) is not None]
        _clients, current = session.get_many([], [role.name for role in wanted])
        for role in wanted:
            self._ensure_role(session, role, current.get(role.name))

    # --- Backend interface --------------------------------------------------------

    def apply_change(self, state: DesiredState, change: Change) -> list[str]:
        self.notes = []
        with self.session() as session:
            self._guard(state, self._protected_roles(session))
            if change.kind == "role":
                self._apply_role(session, state, change)
                passwordless = []
            else:
                passwordless = self._apply_user(session, state, change)
        if self.notes:
            raise ApplyError("; ".join(self.notes))
        return passwordless

    def _apply_role(
        self, session: DynsecSession, state: DesiredState, change: Change
    ) -> None:
        if change.deleted:
            self._delete(session, "deleteRole", "rolename", change.name, ROLE_NOT_FOUND)
            return
        role = state.role(change.name)
        if role is None:
            raise ApplyError(f"role {change.name} is not in the portal")
        self._ensure_role(session, role, session.get_role(role.name))
        if change.old_name and change.old_name != change.name:
            # The plugin cannot rename: move the holders over, then drop the old one.
            holders = [u for u in state.users if role.name in u.roles]
            clients, _roles = session.get_many([u.username for u in holders], [])
            for user in holders:
                self._ensure_client(session, user, clients.get(user.username), None)
            self._delete(
                session, "deleteRole", "rolename", change.old_name, ROLE_NOT_FOUND
            )

    def _apply_user(
        self, session: DynsecSession, state: DesiredState, change: Change
    ) -> list[str]:
        """Returns the user when the broker now holds it without its password."""
        if change.deleted:
            self._delete(
                session, "deleteClient", "username", change.name, CLIENT_NOT_FOUND
            )
            return []
        user = state.user(change.name)
        if user is None:
            raise ApplyError(f"user {change.name} is not in the portal")
        self._ensure_roles_of(session, state, user.roles)
        current = session.get_client(user.username)
        self._ensure_client(session, user, current, change.password)
        if change.password:
            return []
        if user.password_hash and (current is None or user.password_pending):
            return [user.username]
        return []

    @staticmethod
    def _delete(
        session: DynsecSession, command: str, key: str, name: str, absent: str
    ) -> None:
        reply = session.run([{"command": command, key: name}])[0]
        error = reply.get("error")
        if error and error != absent:
            raise DynsecCommandError({"command": command, key: name}, str(error))

    def sync(self, state: DesiredState, *, prune: bool = False) -> SyncOutcome:
        self.notes = []
        with self.session() as session:
            protected = self._protected_roles(session)
            self._guard(state, protected)
            client_names, role_names = session.list_names()
            client_names = [c for c in client_names if c != self.admin_username]
            role_names = [r for r in role_names if r not in protected]
            clients, roles = session.get_many(client_names, role_names)
            drift = self._drift(session, state, clients, roles)
            outcome = SyncOutcome(drift=drift)

            for role in state.roles:
                try:
                    self._ensure_role(session, role, roles.get(role.name))
                except ApplyError as exc:
                    outcome.errors.append(str(exc))
            for user in state.users:
                try:
                    self._ensure_client(session, user, clients.get(user.username), None)
                except ApplyError as exc:
                    outcome.errors.append(str(exc))
                    continue
                created = clients.get(user.username) is None
                if user.password_hash and (created or user.password_pending):
                    outcome.passwordless.append(user.username)
            if prune:
                for name in drift.unknown_users:
                    self._prune(session, outcome, "deleteClient", "username", name)
                for name in drift.unknown_roles:
                    self._prune(session, outcome, "deleteRole", "rolename", name)
            outcome.errors.extend(self.notes)
            return outcome

    @staticmethod
    def _prune(
        session: DynsecSession, outcome: SyncOutcome, command: str, key: str, name: str
    ) -> None:
        reply = session.run([{"command": command, key: name}])[0]
        if reply.get("error"):
            outcome.errors.append(f"{command} {name}: {reply['error']}")
        else:
            outcome.pruned.append(f"{'user' if key == 'username' else 'role'} {name}")

    def _drift(
        self,
        session: DynsecSession,
        state: DesiredState,
        clients: dict[str, dict[str, Any] | None],
        roles: dict[str, dict[str, Any] | None],
    ) -> Drift:
        drift = Drift()
        wanted_users = {u.username: u for u in state.users}
        wanted_roles = {r.name: r for r in state.roles}
        drift.unknown_users = sorted(set(clients) - set(wanted_users))
        drift.unknown_roles = sorted(set(roles) - set(wanted_roles))
        drift.missing_users = sorted(
            name for name in wanted_users if clients.get(name) is None
        )
        drift.missing_roles = sorted(
            name for name in wanted_roles if roles.get(name) is None
        )
        for name, role in wanted_roles.items():
            current = roles.get(name)
            if current is None:
                continue
            have = sorted(_acl_set(current.get("acls") or []))
            want = sorted(_acl_set(self._role_acls(session, role)))
            if have != want:
                drift.differences.append(
                    {
                        "kind": "role",
                        "name": name,
                        "field": "acls",
                        "broker": [_acl_dict(key) for key in have],
                        "portal": [_acl_dict(key) for key in want],
                    }
                )
        for name, user in wanted_users.items():
            current = clients.get(name)
            if current is None:
                continue
            for field_name, have_value, want_value in (
                ("roles", _client_roles(current), sorted(user.roles)),
                ("client_id", current.get("clientid") or "", user.client_id),
                ("disabled", bool(current.get("disabled")), not user.enabled),
            ):
                if have_value != want_value:
                    drift.differences.append(
                        {
                            "kind": "user",
                            "name": name,
                            "field": field_name,
                            "broker": have_value,
                            "portal": want_value,
                        }
                    )
        return drift

    def export(self, state: DesiredState) -> dict[str, Any]:
        """The commands a sync sends to an empty plugin (passwords as hashes)."""
        commands: list[dict[str, Any]] = [
            {"command": "createRole", "rolename": role.name, "acls": role_acls(role)}
            for role in state.roles
        ]
        for user in state.users:
            create: dict[str, Any] = {
                "command": "createClient",
                "username": user.username,
                "roles": [{"rolename": name} for name in user.roles],
            }
            if user.client_id:
                create["clientid"] = user.client_id
            if user.password_hash:
                # Not a field of the plugin: the plain password is sent only when set.
                create["password_hash"] = user.password_hash
            commands.append(create)
            if not user.enabled:
                commands.append({"command": "disableClient", "username": user.username})
        return {
            "backend": "dynsec",
            "topic": REQUEST_TOPIC,
            "management_user": self.admin_username,
            "commands": commands,
        }


def _acl_dict(key: tuple[str, str, bool, int]) -> dict[str, Any]:
    acltype, topic, allow, priority = key
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}
