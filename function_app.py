"""The function app: configures logging once and registers one blueprint per area."""

import logging

import azure.functions as func

from shared.triggers import (
    admin,
    calendar,
    connections,
    consent,
    health,
    power,
    read,
    rules,
    sending,
    sync,
)

logging.getLogger("shared").setLevel(logging.INFO)
logging.getLogger("azure").setLevel(logging.WARNING)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (
    health.bp,
    admin.bp,
    consent.bp,
    connections.bp,
    read.bp,
    rules.bp,
    sync.bp,
    calendar.bp,
    power.bp,
    sending.bp,
):
    app.register_functions(blueprint)
