"""The stream apps of the EV battery twin, laid out by concept::

    settings.py  one settings object per process      topics.py  every topic, once
    runtime/     the Faust app, batch delivery, the batch-agent runner, records, codecs,
                 metrics, logs, partition state
    sources/     the fleet simulator, the MQTT ingest bridge
    scoring/     the score worker: validation, dead letters, fast encode, model source
    state/       per-battery state of the score workers (alert episodes)
    sinks/       the sink contract, the database sink, the MQTT bridge, the app that runs them
    tools/       benchmarks, the naive baseline, the live view
    cli/         ``evtwin``: argument parsing and printing only

Dependencies point down: ``cli`` → ``tools`` → ``sinks``/``scoring``/``sources`` → ``state`` →
``runtime`` → ``settings``/``topics``; ``connectors`` (service clients) below all of them.
"""
