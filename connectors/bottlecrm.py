"""BottleCRM's REST API (the ``django-crm`` package, 1.35): the calls syncd's CRM sink makes.

Interactions (``/api/interactions/``) hang on exactly one record, named at creation and never
changed; ``external_id`` is the server's and cannot be written, and no list filters by
anything but that record.  So the copy's marker (crm/sink.py ``marker``) is the last line of
its body, and an earlier copy is found by listing the interactions of the record it hangs on.
Tasks (``/api/tasks/``) are created without an id in the answer: the new task is found by its
title and the marker at the end of its description, which is also how an interrupted push's
copy is found.  Comments on a contact or an account (where a note goes, BottleCRM having no
note interaction) are found the same way, by the marker at their end.  The mapping of syncd's fields is syncd/crm/bottlecrm.py.
"""

from __future__ import annotations

from typing import Any

from syncd.connectors.crm_http import Answer, JsonHttp

PAGE = 100


class BottleCrmApi:
    def __init__(self, http: JsonHttp) -> None:
        self.http = http

    def close(self) -> None:
        self.http.close()

    # --- interactions -----------------------------------------------------------------------

    def create_interaction(self, body: dict[str, Any]) -> Answer:
        return self.http.post("/api/interactions/", body)

    def update_interaction(self, crm_id: str, body: dict[str, Any]) -> Answer:
        return self.http.patch(f"/api/interactions/{crm_id}/", body)

    def delete_interaction(self, crm_id: str) -> Answer:
        return self.http.delete(f"/api/interactions/{crm_id}/")

    def interactions_of(self, home: str, home_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            answer = self.http.get(
                "/api/interactions/", {home: home_id, "limit": PAGE, "offset": offset}
            )
            if not answer.ok or not isinstance(answer.body, dict):
                return out
            page = answer.body.get("interactions") or []
            out.extend(page)
            offset += len(page)
            if not page or offset >= int(answer.body.get("count") or 0):
                return out

    # --- comments (where a note goes) -------------------------------------------------------
    # A comment hangs on a contact or an account (``home``: "contacts" or "accounts"); it is
    # posted to the record's detail path, whose answer lists the record's comments (not the new
    # one's id: it is found there by its marker).

    def create_comment(self, home: str, home_id: str, text: str) -> Answer:
        return self.http.post(f"/api/{home}/{home_id}/", {"comment": text})

    def update_comment(self, home: str, crm_id: str, text: str) -> Answer:
        return self.http.patch(f"/api/{home}/comment/{crm_id}/", {"comment": text})

    def delete_comment(self, home: str, crm_id: str) -> Answer:
        return self.http.delete(f"/api/{home}/comment/{crm_id}/")

    def comments_of(self, home: str, home_id: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"/api/{home}/{home_id}/")
        return comments_in(answer)

    # --- tasks --------------------------------------------------------------------------------

    def create_task(self, body: dict[str, Any]) -> Answer:
        return self.http.post("/api/tasks/", body)

    def update_task(self, crm_id: str, body: dict[str, Any]) -> Answer:
        return self.http.patch(f"/api/tasks/{crm_id}/", body)

    def delete_task(self, crm_id: str) -> Answer:
        return self.http.delete(f"/api/tasks/{crm_id}/")

    def get_task(self, crm_id: str) -> Answer:
        return self.http.get(f"/api/tasks/{crm_id}/")

    def tasks_titled(self, title: str) -> list[dict[str, Any]]:
        """Tasks whose title contains ``title``, each read whole (the list has no
        description, where the marker is)."""
        answer = self.http.get("/api/tasks/", {"title": title, "limit": PAGE})
        if not answer.ok or not isinstance(answer.body, dict):
            return []
        out = []
        for row in answer.body.get("tasks") or []:
            whole = self.get_task(str(row["id"]))
            if whole.ok and isinstance(whole.body, dict):
                out.append(whole.body.get("task_obj") or {})
        return out

    # --- directory ----------------------------------------------------------------------------

    def contacts_by_email(self, address: str) -> list[dict[str, Any]]:
        answer = self.http.get("/api/contacts/", {"email": address, "limit": PAGE})
        if not answer.ok or not isinstance(answer.body, dict):
            return []
        return list(answer.body.get("contact_obj_list") or answer.body.get("results") or [])

    def accounts_named(self, name: str) -> list[dict[str, Any]]:
        answer = self.http.get("/api/accounts/", {"name": name, "limit": PAGE})
        return _accounts(answer)

    def all_accounts(self) -> list[dict[str, Any]]:
        return self._pages("/api/accounts/", _accounts)

    def all_contacts(self) -> list[dict[str, Any]]:
        def contacts(answer: Answer) -> list[dict[str, Any]]:
            if not answer.ok or not isinstance(answer.body, dict):
                return []
            return list(answer.body.get("contact_obj_list") or answer.body.get("results") or [])

        return self._pages("/api/contacts/", contacts)

    def _pages(self, path: str, items: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        offset = 0
        while True:
            page = items(self.http.get(path, {"limit": PAGE, "offset": offset}))
            fresh = [row for row in page if str(row.get("id")) not in seen]
            if not fresh:
                return out
            seen.update(str(row.get("id")) for row in fresh)
            out.extend(fresh)
            offset += len(page)


def comments_in(answer: Answer) -> list[dict[str, Any]]:
    if not answer.ok or not isinstance(answer.body, dict):
        return []
    return [row for row in answer.body.get("comments") or [] if isinstance(row, dict)]


def _accounts(answer: Answer) -> list[dict[str, Any]]:
    if not answer.ok or not isinstance(answer.body, dict):
        return []
    # Active accounts only: one made inactive there is archived here.
    active = answer.body.get("active_accounts")
    return list(active.get("open_accounts") or []) if isinstance(active, dict) else []
