"""Schedules: the ScheduleService and its checks (``service``, ``_checks``), the firing loop
(``scheduler``), the policies a fire follows (``policy``) and the pure fire-time logic that tests
drive with a fake clock (``timing``); stored through ``control_plane.storage.schedules``. Nothing
here imports Ray."""
