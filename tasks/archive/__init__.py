"""Archiving plates: list → stage → tar → upload → verify → gate → delete, as plain steps
(``listing``, ``bundle``, ``staging``, ``streaming``, ``verify``, ``delete``) and thin
Prefect tasks over them (``tasks``)."""
