"""The notifier service: follows every open alert on the ``alerts`` topic and decides who hears
about it and when (routes, grouping, escalation, reminders, quiet hours), then delivers it by
webhook and e-mail with retries, recording every attempt on ``notifications``.

Logic is Kafka-free (``tracking``: the followed alert and its transitions, ``schedule``:
timers and grouping); ``app`` is the faust app, ``service`` the entry point."""
