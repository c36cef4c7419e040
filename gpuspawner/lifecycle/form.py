"""The spawn form: a catalog image and a GPU count the user may still take.

Rendered from the ``spawn_form.html`` template (:mod:`gpuspawner.templating`), which an
admin may override through the spawner's ``template_paths``.
"""

from ..policy.wording import plural, server_label
from ..templating import render


async def render_options_form(spawner) -> str:
    """The spawn form: a catalog image and a GPU count the user may still take."""
    availability = await spawner.gpu_availability()
    limit = spawner.user_quota
    may_take = min(limit.count, spawner.max_gpus_per_server)
    if availability is not None:
        may_take = max(0, min(may_take - availability.held, availability.free))
    budget_text, budget_spent = await spawner.accounting.budget_status()
    if budget_spent:
        may_take = 0
    lines = ["Your limit: %s at once (%s)." % (plural(limit.count), limit.source)]
    if availability is not None:
        lines.append(
            "%d of %d GPUs free on this hub. You hold %s."
            % (availability.free, availability.total, availability.held_text)
        )
    if budget_text:
        lines.append(budget_text)
    return render(
        "spawn_form.html",
        spawner.template_paths,
        images=spawner.offered_images(),
        gpu_counts=[(n, plural(n)) for n in range(may_take + 1)],
        server_label=server_label(spawner.server_name),
        status_lines=lines,
    )
