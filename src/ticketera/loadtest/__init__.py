"""`ticketera loadtest`: simulated fans on sale day, pointed at any Ticketera deployment over HTTP.

A client of the public HTTP API and nothing else: it imports none of the service's code (an
import-linter contract says so), so what it measures is what a buyer's browser would meet. Modules:

    safety.py     which addresses it may talk to, and the client that refuses every other one
    fans.py       one fan's way through the sale: join, wait in line, hold, order, pay, tickets
    recorder.py   what every request and every fan did, as it happened
    scrape.py     the target's own figures from its /metrics (CPU, RSS, the line, orders)
    runner.py     the run: options, arrivals, the monitor, the time bound
    report.py     figures.json, the targets met or not, report.md
    charts.py     the PNG charts (matplotlib, an optional dependency: `ticketera[loadtest]`)
    progress.py   the live display (rich)
"""
