"""A local MercadoPago: the REST API, the checkout page and signed webhooks, faithful enough that the
official SDK works against it unchanged. For development (`ticketera mp-sim`, started by `ticketera dev`)
and tests (`tests/mpsim_server.py`). No imports from Ticketera's domain packages: it stands where
MercadoPago stands, outside the service.
"""
