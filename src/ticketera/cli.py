"""The `ticketera` command: the deployment guide's npm scripts, as Python-native commands.

npm run dev          ->  ticketera dev
npm run start:prod   ->  ticketera serve
npm run health       ->  ticketera health
npm run logs         ->  ticketera logs        (logs:error -> ticketera logs --errors)
npm run db:optimize  ->  ticketera db optimize
npm run redis:flush  ->  ticketera redis flush
(new)                ->  ticketera worker       (expires overdue holds and orders)
(new)                ->  ticketera mp-sim       (the local MercadoPago simulator; `dev` starts it)
(new)                ->  ticketera db backup | restore | partitions | archive | unarchive
(new)                ->  ticketera loadtest     (simulated fans against a deployment; a report)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from ticketera.config import ConfigError, Settings, load_settings
from ticketera.infra.workers import reuse_port_supported, serve_workers
from ticketera.queue.identity import UserAssertions

if TYPE_CHECKING:
    from ticketera.kit.backup import BackupSummary
    from ticketera.mpsim.runner import SimulatorProcess

app = typer.Typer(help="Ticketera: ticket sales for high-demand on-sales.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
redis_app = typer.Typer(help="Redis maintenance.", no_args_is_help=True)
app.add_typer(redis_app, name="redis")
# The `limits` library's key prefix: counters that are safe to lose at any time.
RATE_LIMIT_KEYS = "LIMITS*"
# Where `ticketera dev` and `ticketera mp-sim` put the MercadoPago simulator.
MPSIM_PORT = 8090

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default: HOST or 0.0.0.0).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (default: PORT or 3000).")]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except (ConfigError, ValidationError) as exc:
        typer.secho(f"Configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _migrate(settings: Settings) -> None:
    from ticketera.kit.migrate import upgrade_blocking

    upgrade_blocking(settings)
    typer.echo(f"Database migrated to head ({_describe_database(settings)}).")


def _describe_database(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(settings.async_database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    return f"{url.get_backend_name()} {url.host}:{url.port or 3306}/{url.database}"


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each its own event loop).")] = 1,
    migrate: Annotated[bool, typer.Option(help="Apply migrations before serving.")] = True,
) -> None:
    """Run the service (migrations first). Production: APP_ENV=production, secrets required."""
    import uvicorn

    settings = _settings()
    if settings.is_sqlite and workers > 1:
        typer.secho(
            "Note: several workers share one SQLite file; writes are serialised. Use MariaDB for scale.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if migrate:
        _migrate(settings)
    _warn_past_connection_limit(settings, workers)
    options: dict[str, Any] = {
        "proxy_headers": True,
        # Only these proxies' X-Forwarded-For is believed, and the client is the right-most hop
        # that is not one of them (uvicorn's rule for a list; with "*" it takes the left-most,
        # which any client writes itself).
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # Longer than nginx's upstream keepalive_timeout (60 s), so the proxy always closes an idle
        # connection first and never sends a request down one the app is closing (a 502).
        "timeout_keep_alive": 75,
    }
    bind_host, bind_port = host or settings.host, port or settings.port
    # The app builds its own settings from the environment: it must know its port for the default
    # PUBLIC_BASE_URL (the URLs MercadoPago sends buyers and webhooks back to).
    os.environ["PORT"] = str(bind_port)
    if workers > 1 and reuse_port_supported():
        serve_workers(bind_host, bind_port, workers, options)
        return
    uvicorn.run(
        "ticketera.main:create_app", factory=True, host=bind_host, port=bind_port, workers=workers, **options
    )


def _warn_past_connection_limit(settings: Settings, workers: int) -> None:
    """Say so when this server's connections (workers x DB_POOL_SIZE, to the primary and to each
    replica alike) could take more than a MariaDB's max_connections allows: the last of them would
    be refused under load, not at start-up."""
    from sqlalchemy.engine import make_url

    from ticketera.kit.db import connection_limit

    budget = workers * settings.db_pool_size
    for url in [None, *settings.async_replica_urls]:
        limit = asyncio.run(connection_limit(settings, url))
        if limit is not None and budget > limit:
            server = "the database" if url is None else f"the replica at {make_url(url).host}"
            typer.secho(
                f"Warning: {workers} workers x DB_POOL_SIZE {settings.db_pool_size} = {budget} connections,"
                f" but {server} allows max_connections={limit} for every client together (other replicas of"
                " this service, the worker, operators): raise max_connections or lower DB_POOL_SIZE.",
                fg=typer.colors.YELLOW,
                err=True,
            )


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: PortOption = None,
    reload: Annotated[bool, typer.Option(help="Restart when the source changes.")] = True,
    mp_sim: Annotated[
        bool,
        typer.Option(help="Start the MercadoPago simulator beside the service (unless MP_BASE_URL is set)."),
    ] = True,
    mp_sim_port: Annotated[int, typer.Option(help="Port of the MercadoPago simulator.")] = MPSIM_PORT,
) -> None:
    """Run on the embedded default with reload: migrate, load the demo event, print the keys.

    Also starts the MercadoPago simulator (`ticketera mp-sim`) on port 8090 with the same MP_ACCESS_TOKEN
    and MP_WEBHOOK_SECRET, and points the service at it, unless MP_BASE_URL says otherwise.
    """
    import uvicorn

    settings = Settings()
    if settings.is_production_like:
        typer.secho("`ticketera dev` is for development; use `ticketera serve` in production.", err=True)
        raise typer.Exit(2)
    settings, secrets = settings.with_development_secrets()
    _migrate(settings)
    event_id, created = asyncio.run(_load_demo(settings))
    port = port or settings.port
    os.environ["PORT"] = str(port)  # see `serve`: the app's default PUBLIC_BASE_URL follows it
    base = f"http://{host}:{port}"
    simulator = _start_mp_simulator(settings, mp_sim_port) if mp_sim else None
    if simulator is not None:
        settings = settings.model_copy(update={"mp_base_url": simulator.base_url})
    typer.secho("\nTicketera (development)", bold=True)
    typer.echo(f"  Shop         {base}/   console {base}/admin (admin key)   door {base}/door (staff key)")
    typer.echo(f"  API          {base}/api   docs {base}/docs")
    typer.echo(f"  Database     {_describe_database(settings)}")
    typer.echo(
        f"  Redis        {settings.effective_redis_url or 'not configured: in-process queue and caches'}"
    )
    state = "created" if created else "already there"
    typer.echo(f"  Demo event   id {event_id} ({state}): {base}/api/events/{event_id}")
    mercadopago = "simulator, control API /_sim/" if simulator is not None else "as configured"
    typer.echo(f"  MercadoPago  {settings.mp_base_url} ({mercadopago})")
    typer.echo(f"  Admin key    {settings.admin_api_key}")
    typer.echo(f"  Staff key    {settings.staff_api_key}")
    if secrets:
        typer.echo(f"  (generated once, kept in {settings.data_dir / 'secrets.json'})")
    typer.echo(f'  Try:         curl -H "Authorization: Bearer {settings.admin_api_key}" {base}/api/events\n')
    source_dir = Path(__file__).resolve().parent
    try:
        uvicorn.run(
            "ticketera.main:create_app",
            factory=True,
            host=host,
            port=port,
            reload=reload,
            reload_dirs=[str(source_dir)] if reload else None,
            log_config=None,
            access_log=False,
        )
    finally:
        if simulator is not None and simulator.process is not None:
            simulator.process.stop()


@dataclass
class _DevSimulator:
    base_url: str
    process: SimulatorProcess | None  # None: one was already running, and stays


def _start_mp_simulator(settings: Settings, port: int) -> _DevSimulator | None:
    """The simulator for `ticketera dev`, unless MP_BASE_URL points elsewhere; None when not used."""
    from ticketera.mpsim.runner import (
        SimulatorStartError,
        simulator_accepts,
        simulator_answers,
        start_simulator_process,
    )

    url = f"http://127.0.0.1:{port}"
    if "mp_base_url" in settings.model_fields_set and settings.mp_base_url.rstrip("/") != url:
        return None
    # Both filled in by with_development_secrets in development.
    assert settings.mp_access_token
    assert settings.mp_webhook_secret
    # The service reads its settings from the environment (uvicorn's factory, reload workers too).
    os.environ["MP_BASE_URL"] = url
    if simulator_answers(url):
        if not simulator_accepts(url, settings.mp_access_token):
            typer.secho(
                f"A MercadoPago simulator at {url} refuses this MP_ACCESS_TOKEN: "
                "stop it, or use --mp-sim-port.",
                fg=typer.colors.YELLOW,
                err=True,
            )
        return _DevSimulator(url, None)
    try:
        process = start_simulator_process(
            host="127.0.0.1",
            port=port,
            access_token=settings.mp_access_token,
            webhook_secret=settings.mp_webhook_secret,
        )
    except SimulatorStartError as exc:
        typer.secho(f"The MercadoPago simulator did not start: {exc}", fg=typer.colors.YELLOW, err=True)
        return _DevSimulator(url, None)
    return _DevSimulator(url, process)


@app.command("mp-sim")
def mp_sim(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = MPSIM_PORT,
) -> None:
    """Run the local MercadoPago simulator: REST API, checkout page, signed webhooks, /_sim control API."""
    from ticketera.infra.logging import configure_logging
    from ticketera.mpsim.runner import serve_simulator
    from ticketera.mpsim.settings import SimulatorConfigError, SimulatorSettings

    # The service's own MP_ACCESS_TOKEN and MP_WEBHOOK_SECRET (development ones included), so a
    # service started separately with `ticketera dev` or `serve` is accepted and can verify.
    service, _ = Settings().with_development_secrets()
    simulator = SimulatorSettings(
        mpsim_port=port, mp_access_token=service.mp_access_token, mp_webhook_secret=service.mp_webhook_secret
    )
    base = f"http://{host}:{port}"
    typer.secho("\nMercadoPago simulator (ticketera.mpsim)", bold=True)
    typer.echo(f"  API          {base}   (Authorization: Bearer <MP_ACCESS_TOKEN>), docs {base}/docs")
    typer.echo(f"  Checkout     {simulator.public_url}/checkout/v1/redirect?pref_id=...")
    typer.echo(f"  Control      {base}/_sim/config, /_sim/notifications, /_sim/faults, /_sim/reset")
    typer.echo(f"  Set          MP_BASE_URL={base} for the service\n")
    configure_logging(
        json_console=service.is_production_like, level=service.log_level, secrets=service.secret_values()
    )
    try:
        serve_simulator(simulator, host=host, port=port)
    except SimulatorConfigError as exc:
        typer.secho(f"Configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


async def _load_demo(settings: Settings) -> tuple[int, bool]:
    from ticketera.events.demo import ensure_demo_event
    from ticketera.kit.db import Database, engine_for

    database = Database(engine_for(settings, pool_size=2))
    try:
        async with database.write_session() as session:
            return await ensure_demo_event(session)
    finally:
        await database.dispose()


@app.command()
def worker(
    interval: Annotated[
        float | None, typer.Option(help="Seconds between passes (default WORKER_INTERVAL_SECONDS).")
    ] = None,
) -> None:
    """Expire overdue holds and orders, process payment notifications, send due refunds and
    reconcile unpaid orders with MercadoPago; run one or several beside the web servers."""
    from ticketera.composition import Role, build_services
    from ticketera.infra.logging import configure_logging
    from ticketera.kit.clock import utc_now
    from ticketera.ops.tasks import run_worker, stop_on_signals

    settings = _settings()
    configure_logging(
        json_console=settings.is_production_like,
        level=settings.log_level,
        log_dir=settings.log_dir,
        secrets=settings.secret_values(),
    )

    async def run() -> None:
        services = build_services(settings, utc_now, role=Role.WORKER)
        stop = asyncio.Event()
        stop_on_signals(stop)
        try:
            await run_worker(
                services.database,
                utc_now,
                interval=interval or settings.worker_interval_seconds,
                payments=services.payments,
                mailer=services.mailer,
                partition_months_ahead=settings.partition_months_ahead,
                stop=stop,
            )
        finally:
            await services.close()

    try:
        asyncio.run(run())
    except (asyncio.CancelledError, KeyboardInterrupt):  # cut off (or Ctrl-C where no handler can be set)
        raise typer.Exit(1) from None


@app.command()
def migrate() -> None:
    """Apply the database migrations up to the latest revision."""
    _migrate(_settings())


@app.command()
def demo() -> None:
    """Load the demo event (a reserved section and a general-admission section) if missing."""
    settings = _settings()
    event_id, created = asyncio.run(_load_demo(settings))
    typer.echo(f"Demo event id {event_id} ({'created' if created else 'already there'}).")


@app.command("user-assertion")
def user_assertion(
    user_id: Annotated[str, typer.Argument(help="The organizer's id of the signed-in user.")],
    minutes: Annotated[int, typer.Option(min=1, max=1440, help="How long it stays valid.")] = 60,
) -> None:
    """Print a join body vouching for USER_ID, signed with USER_ASSERTION_SECRET (what the
    organizer's site sends with a signed-in user; for trying it out and for tests)."""
    settings = _settings()
    if not settings.user_assertion_secret:
        typer.secho("USER_ASSERTION_SECRET is not set: no assertion can be signed.", fg="red", err=True)
        raise typer.Exit(1)
    expires_at = datetime.now(UTC) + timedelta(minutes=minutes)
    assertion = UserAssertions(settings.user_assertion_secret).sign(user_id, expires_at)
    typer.echo(json.dumps({"userId": user_id, "userAssertion": assertion}))


@app.command()
def loadtest(
    url: Annotated[
        str, typer.Option(help="Base URL of the deployment under test.")
    ] = "http://127.0.0.1:3000",
    event: Annotated[
        int | None, typer.Option(help="Event to sell (default: the demo event, or the only one on sale).")
    ] = None,
    fans: Annotated[int, typer.Option(min=1, help="Simulated fans, each one visit.")] = 200,
    report: Annotated[
        Path | None, typer.Option(help="Report directory (default loadtest-reports/<time>).")
    ] = None,
    max_seconds: Annotated[
        float, typer.Option(min=1, help="The run ends here, whatever is still going.")
    ] = 300.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Most requests in flight at once (connections to the target).")
    ] = 100,
    ramp_seconds: Annotated[
        float, typer.Option(min=0, help="Fans arrive evenly over this many seconds.")
    ] = 10.0,
    think_seconds: Annotated[
        float, typer.Option(min=0, help="A fan's pause before holding, ordering and paying (mean; +-50%).")
    ] = 2.0,
    abandon_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Chance a fan leaves, at each of: in line, after holding, at checkout."
        ),
    ] = 0.0,
    pay: Annotated[
        bool, typer.Option(help="Pay in the MercadoPago simulator and wait for the tickets.")
    ] = True,
    simulator_url: Annotated[
        str | None,
        typer.Option(
            help="The target's MercadoPago simulator (make dev: http://127.0.0.1:8090),"
            " the only other address the run may use."
        ),
    ] = None,
    quantity: Annotated[
        str, typer.Option(help="Places per fan: N or MIN-MAX (capped by the event's limit).")
    ] = "1-4",
    sse: Annotated[bool, typer.Option(help="Wait in line on the SSE stream instead of polling.")] = False,
    express: Annotated[
        bool,
        typer.Option(
            help="General admission in one request (the express purchase); --no-express holds, then orders."
        ),
    ] = True,
    poll_min_seconds: Annotated[
        float, typer.Option(min=0.1, help="Fastest a waiting fan polls, whatever pace the answer gives.")
    ] = 2.0,
    poll_max_seconds: Annotated[
        float, typer.Option(min=0.1, help="Slowest a waiting fan polls, whatever pace the answer gives.")
    ] = 60.0,
    paid_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds from approval to a paid order before it counts as not paid.")
    ] = 60.0,
    sample_seconds: Annotated[
        float, typer.Option(min=0.1, help="How often /metrics and the event are read.")
    ] = 2.0,
    p95_ms: Annotated[
        float, typer.Option(help="Target: p95 latency of every request, ms (0: unchecked).")
    ] = 100.0,
    min_rpm: Annotated[
        float, typer.Option(help="Target: requests per minute at least (0: unchecked).")
    ] = 2000.0,
    max_rss_mb: Annotated[
        float, typer.Option(help="Target: RSS of each process below, MB (0: unchecked).")
    ] = 512.0,
    max_cpu_percent: Annotated[
        float, typer.Option(help="Target: mean CPU of the busiest process, % of a core (0: unchecked).")
    ] = 70.0,
    max_error_rate: Annotated[
        float, typer.Option(help="Target: failed requests per request at most.")
    ] = 0.01,
    seed: Annotated[int | None, typer.Option(help="Replays the fans' choices of an earlier run.")] = None,
    i_own_this: Annotated[
        bool,
        typer.Option("--i-own-this", help="Allow a target that is not on this machine: it must be yours."),
    ] = False,
    live: Annotated[bool, typer.Option(help="The live progress display.")] = True,
) -> None:
    """Simulated fans through the whole sale (line, hold, order, payment, tickets); writes a report
    and exits 1 when the deployment guide's targets (or the ones given here) are not met.

    Traffic goes only to --url and --simulator-url; a target off this machine needs --i-own-this.
    """
    from rich.console import Console

    from ticketera.loadtest.command import parse_quantity, run_command
    from ticketera.loadtest.runner import LoadtestOptions, Targets

    try:
        places = parse_quantity(quantity)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quantity") from exc
    options = LoadtestOptions(
        url=url,
        fans=fans,
        event_id=event,
        report_dir=report,
        max_seconds=max_seconds,
        concurrency=concurrency,
        ramp_seconds=ramp_seconds,
        think_seconds=think_seconds,
        abandon_rate=abandon_rate,
        pay=pay,
        simulator_url=simulator_url,
        quantity=places,
        sse=sse,
        express=express,
        poll_min_seconds=poll_min_seconds,
        poll_max_seconds=poll_max_seconds,
        paid_timeout_seconds=paid_timeout,
        sample_seconds=sample_seconds,
        seed=seed,
        i_own_this=i_own_this,
        targets=Targets(
            p95_ms=p95_ms,
            requests_per_minute=min_rpm,
            rss_mb=max_rss_mb,
            cpu_percent=max_cpu_percent,
            error_rate=max_error_rate,
        ),
    )
    raise typer.Exit(run_command(options, Console(), live=live))


@app.command()
def health(
    url: Annotated[
        str | None, typer.Option(help="Base URL of the service (default http://127.0.0.1:PORT).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
) -> None:
    """Read /health and summarise it; exits non-zero unless the status is ok."""
    base = (url or f"http://127.0.0.1:{Settings().port}").rstrip("/")
    try:
        response = httpx.get(f"{base}/health", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        typer.secho(f"Ticketera at {base} did not answer /health: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        typer.echo(_health_summary(base, response.status_code, body))
    if body.get("status") != "ok":
        raise typer.Exit(1)


def _health_summary(base: str, status_code: int, body: dict[str, Any]) -> str:
    services = body.get("services", {})
    database = services.get("database", {})
    pool = database.get("pool", {})
    redis = services.get("redis", {})
    queue = services.get("queue", {})
    memory = body.get("performance", {}).get("memory", {})
    mark = "OK" if body.get("status") == "ok" else body.get("status", "?").upper()
    lines = [
        f"{mark}  {base}  HTTP {status_code}  version {body.get('version')}  up {body.get('uptime')} s",
        f"  database  {database.get('status')} ({database.get('backend', '?')}), pool "
        f"{pool.get('totalConnections')} open / {pool.get('freeConnections')} free / "
        f"limit {pool.get('connectionLimit')}, breaker {database.get('circuitBreaker', {}).get('state')}",
        f"  redis     {redis.get('status')}, breaker {redis.get('circuitBreaker', {}).get('state')} "
        f"({redis.get('circuitBreaker', {}).get('failureCount')} failures)",
        f"  queue     {queue.get('status')}, {'available' if queue.get('available') else 'UNAVAILABLE'}"
        f" ({queue.get('backend', '?')})",
        f"  memory    rss {memory.get('rss', 0) / 2**20:.1f} MiB, "
        f"heap {memory.get('heapUsed', 0) / 2**20:.1f} MiB",
    ]
    return "\n".join(lines)


@app.command()
def logs(
    errors: Annotated[bool, typer.Option("--errors", help="Only warnings and errors.")] = False,
    lines: Annotated[int, typer.Option(min=0, help="How many past lines to show first.")] = 50,
    follow: Annotated[bool, typer.Option(help="Keep printing new lines as they arrive.")] = True,
) -> None:
    """Show the service's log (LOG_DIR/ticketera.log), newest last; --errors for problems only."""
    from ticketera.infra.logging import LOG_FILE_NAME

    path = Settings().log_dir / LOG_FILE_NAME
    if not path.exists():
        typer.secho(f"No log yet at {path}: start the service first.", err=True)
        raise typer.Exit(1)
    with path.open(encoding="utf-8", errors="replace") as handle:
        past = [line for line in handle.readlines() if _wanted(line, errors)]
        for line in past[-lines:] if lines else []:
            typer.echo(_format_log_line(line))
        while follow:
            line = handle.readline()
            if not line:
                time.sleep(0.25)
                continue
            if _wanted(line, errors):
                typer.echo(_format_log_line(line))


def _wanted(line: str, errors_only: bool) -> bool:
    if not errors_only:
        return True
    try:
        return json.loads(line).get("level") in ("warning", "error", "critical", "exception")
    except ValueError:
        return True


def _format_log_line(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line.rstrip("\n")
    timestamp = record.pop("timestamp", "")
    level = record.pop("level", "")
    event = record.pop("event", "")
    record.pop("logger", None)
    fields = " ".join(f"{key}={value}" for key, value in record.items())
    return f"{timestamp} {level:<8} {event} {fields}".rstrip()


@redis_app.command("flush")
def redis_flush(
    queue_event: Annotated[
        int | None, typer.Option(help="Also erase this event's waiting room: every place in line is lost.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm erasing a waiting room.")] = False,
) -> None:
    """Clear Ticketera's disposable Redis data (rate-limit counters); waiting rooms only on request."""
    from ticketera.infra.redis import RedisConnection

    settings = _settings()
    url = settings.effective_redis_url
    if url is None:
        typer.echo("No Redis configured (REDIS_URL / REDIS_HOST): nothing to flush.")
        return
    if queue_event is not None and not yes:
        typer.secho("Erasing a waiting room loses every place in line; add --yes to confirm.", err=True)
        raise typer.Exit(2)

    async def run() -> list[tuple[str, int]]:
        connection = RedisConnection(url, cluster=settings.redis_cluster)
        try:
            done = [("rate-limit counters", await connection.delete_matching(RATE_LIMIT_KEYS))]
            if queue_event is not None:
                done.append(
                    (
                        f"waiting room of event {queue_event}",
                        await connection.delete_matching(f"q:{{event:{queue_event}}}:*"),
                    )
                )
            return done
        finally:
            await connection.close()

    for what, count in asyncio.run(run()):
        typer.echo(f"Deleted {count} keys: {what}.")


@db_app.command("optimize")
def db_optimize() -> None:
    """Verify the performance indexes, create missing ones, refresh statistics (ANALYZE)."""
    from ticketera.kit.db import engine_for
    from ticketera.ops.repository import optimize_database

    settings = _settings()

    async def run() -> list[str]:
        engine = engine_for(settings, pool_size=1)
        try:
            return await optimize_database(engine)
        finally:
            await engine.dispose()

    typer.echo(f"Optimising {_describe_database(settings)}:")
    for action in asyncio.run(run()):
        typer.echo(f"  {action}")


@db_app.command("backup")
def db_backup(
    output: Annotated[
        Path | None,
        typer.Option(
            help="Where to write it (default DATA_DIR/backups/ticketera-<backend>-<time>.jsonl.gz)."
        ),
    ] = None,
    redis: Annotated[
        bool,
        typer.Option(
            "--redis/--no-redis",
            help="Also save Redis' snapshot (waiting rooms) beside it, one file per master if configured.",
        ),
    ] = True,
) -> None:
    """Back up every table from one consistent snapshot, without stopping sales: compressed, with the
    schema revision and a checksum (and FILE.sha256 beside it), and Redis' RDB snapshot beside it.
    Prints the file's path last."""
    from ticketera.kit.backup import write_backup
    from ticketera.kit.db import engine_for
    from ticketera.kit.migrate import current_revision
    from ticketera.models import metadata

    settings = _settings()

    async def run() -> BackupSummary:
        engine = engine_for(settings, pool_size=1)
        try:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            path = (
                output or settings.data_dir / "backups" / f"ticketera-{engine.dialect.name}-{stamp}.jsonl.gz"
            )
            return await write_backup(engine, metadata, path, schema_revision=await current_revision(engine))
        finally:
            await engine.dispose()

    started = time.monotonic()
    summary = asyncio.run(run())
    typer.echo(
        f"Backed up {_describe_database(settings)}: {summary.total_rows} rows in {len(summary.rows)} tables,"
        f" schema {summary.schema_revision}, {time.monotonic() - started:.1f} s."
    )
    redis_url = settings.effective_redis_url
    if redis and redis_url:
        from ticketera.infra.redis_snapshot import snapshot_beside

        for snapshot in asyncio.run(snapshot_beside(summary.path, redis_url, cluster=settings.redis_cluster)):
            where = f"{snapshot.server.host}:{snapshot.server.port}"
            typer.echo(f"Redis {where}: {snapshot.size:,} bytes in {snapshot.path}")
    typer.echo(str(summary.path))


@db_app.command("restore")
def db_restore(
    backup: Annotated[Path, typer.Argument(help="A file made by `ticketera db backup`.", exists=True)],
    force: Annotated[
        bool, typer.Option("--force", help="Replace what the database already holds (every row is lost).")
    ] = False,
) -> None:
    """Restore a backup into the database DATABASE_URL names, at the backup's schema revision, then
    migrate it to this version's. Refuses a database that holds data, unless --force."""
    from ticketera.kit.backup import BackupError, database_is_empty, read_backup_header, restore_backup
    from ticketera.kit.db import engine_for
    from ticketera.models import metadata

    settings = _settings()
    try:
        summary = read_backup_header(backup)
    except BackupError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc

    async def run() -> bool:
        engine = engine_for(settings, pool_size=1)
        try:
            if not await database_is_empty(engine, metadata) and not force:
                return False
            await restore_backup(engine, metadata, summary)
            return True
        finally:
            await engine.dispose()

    started = time.monotonic()
    if not asyncio.run(run()):
        typer.secho(
            f"{_describe_database(settings)} already holds data: restoring would replace it."
            " Run again with --force to do so.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"Restored {summary.total_rows} rows ({summary.backend}, schema {summary.schema_revision},"
        f" taken {summary.created_at}) into {_describe_database(settings)}"
        f" in {time.monotonic() - started:.1f} s; migrated to head."
    )


@db_app.command("partitions")
def db_partitions(
    months_ahead: Annotated[
        int | None,
        typer.Option(min=1, help="Months to have ahead of this one (default PARTITION_MONTHS_AHEAD)."),
    ] = None,
    retention_months: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Months kept, this one included; older ones leave (default per table: the audit log's"
            " AUDIT_LOG_RETENTION_MONTHS, the webhook inbox's PAYMENT_NOTIFICATION_RETENTION_MONTHS).",
        ),
    ] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Where expired months are archived first (default DATA_DIR/archive).")
    ] = None,
    no_archive: Annotated[
        bool, typer.Option("--no-archive", help="Drop expired months without archiving their rows.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done, do nothing.")] = False,
) -> None:
    """Keep the monthly partitions (MariaDB): add the months ahead, archive and drop the months past
    the retention; and archive and delete the webhook inbox's processed notifications past theirs
    (either engine). Safe while sales run; running it twice changes nothing."""
    from ticketera.kit.db import engine_for
    from ticketera.kit.migrate import current_revision
    from ticketera.kit.partitions import AUDIT_LOG_MONTHLY, PARTITIONED_TABLES, maintain_partitions
    from ticketera.ops.retention import prune_notifications

    settings = _settings()
    retention = {AUDIT_LOG_MONTHLY.name: settings.audit_log_retention_months}
    folder = None if no_archive else (archive_dir or settings.data_dir / "archive")

    async def run() -> list[str]:
        engine = engine_for(settings, pool_size=1)
        try:
            revision = await current_revision(engine)
            done: list[str] = []
            for monthly in PARTITIONED_TABLES:
                done += await maintain_partitions(
                    engine,
                    monthly,
                    datetime.now(UTC),
                    months_ahead=months_ahead or settings.partition_months_ahead,
                    retention_months=retention_months or retention.get(monthly.name),
                    archive_dir=folder,
                    schema_revision=revision,
                    dry_run=dry_run,
                )
            # The inbox cannot be partitioned (kit.partitions); it is pruned by rows (ops.retention).
            done += await prune_notifications(
                engine,
                datetime.now(UTC),
                retention_months=retention_months or settings.payment_notification_retention_months,
                archive_dir=folder,
                schema_revision=revision,
                dry_run=dry_run,
            )
            return done
        finally:
            await engine.dispose()

    typer.echo(f"Partitions of {_describe_database(settings)}{' (dry run)' if dry_run else ''}:")
    for line in asyncio.run(run()):
        typer.echo(f"  {line}")


@db_app.command("archive")
def db_archive(
    event: Annotated[int, typer.Option("--event", min=1, help="The id of the finished event to archive.")],
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write it (default DATA_DIR/archive/event-<id>-<time>.jsonl.gz)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Archive an event that has not finished ARCHIVE_AFTER_DAYS ago."),
    ] = False,
) -> None:
    """Move a finished event out of the database: every row of it (sections, seats, holds, orders,
    payments, tickets, emails, its key, its audit trail) to a compressed, checksummed file, then
    deleted in small batches while other sales go on. Prints the file's path last; `ticketera db
    unarchive FILE` brings it back."""
    from ticketera.kit.db import engine_for
    from ticketera.kit.migrate import current_revision
    from ticketera.ops.archive import ArchivedEvent, ArchiveRefused, archive_event

    settings = _settings()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = output or settings.data_dir / "archive" / f"event-{event}-{stamp}.jsonl.gz"

    async def run() -> ArchivedEvent:
        engine = engine_for(settings, pool_size=1)
        try:
            return await archive_event(
                engine,
                event,
                path,
                datetime.now(UTC),
                after_days=settings.archive_after_days,
                force=force,
                schema_revision=await current_revision(engine),
            )
        finally:
            await engine.dispose()

    started = time.monotonic()
    try:
        archived = asyncio.run(run())
    except ArchiveRefused as exc:
        typer.secho(f"Not archived: {exc}.", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    summary = archived.summary
    typer.echo(
        f"Archived event {event} ({archived.name}) from {_describe_database(settings)}:"
        f" {summary.rows.get('orders', 0)} orders, {summary.rows.get('tickets', 0)} tickets,"
        f" {summary.total_rows} rows in all, deleted in {time.monotonic() - started:.1f} s."
    )
    typer.echo(str(summary.path))


@db_app.command("unarchive")
def db_unarchive(
    archive: Annotated[
        Path, typer.Argument(help="A file made by `ticketera db archive` or `db partitions`.", exists=True)
    ],
) -> None:
    """Bring an archived event (or an archived month of a partitioned table) back into the database
    DATABASE_URL names, after checking the file is whole."""
    from ticketera.kit.backup import BackupError
    from ticketera.kit.db import engine_for
    from ticketera.kit.migrate import current_revision
    from ticketera.ops.archive import ArchiveRefused, unarchive

    settings = _settings()

    async def run() -> BackupSummary:
        engine = engine_for(settings, pool_size=1)
        try:
            return await unarchive(engine, archive, schema_revision=await current_revision(engine))
        finally:
            await engine.dispose()

    try:
        summary = asyncio.run(run())
    except (ArchiveRefused, BackupError) as exc:
        typer.secho(f"Not restored: {exc}.", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    scope = summary.header.get("scope", {})
    what = f"event {scope['event']}" if "event" in scope else f"{scope.get('table')} {scope.get('partition')}"
    typer.echo(f"Restored {what}: {summary.total_rows} rows into {_describe_database(settings)}.")
