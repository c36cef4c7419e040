"""The spawn form: a catalog image and a GPU count the user may still take."""

import html

from ..policy.wording import plural, server_label


async def render_options_form(spawner) -> str:
    """The spawn form: a catalog image and a GPU count the user may still take."""
    images = spawner.offered_images()
    availability = await spawner.gpu_availability()
    limit = spawner.user_quota
    may_take = min(limit.gpus, spawner.max_gpus_per_server)
    if availability is not None:
        may_take = max(0, min(may_take - availability.held, availability.free))
    budget_text, budget_spent = await spawner.accounting.budget_status()
    if budget_spent:
        may_take = 0
    image_options = "\n".join(
        '<option value="%s"%s>%s%s</option>'
        % (
            html.escape(image.key),
            " selected" if i == 0 else "",
            html.escape(image.display_name),
            html.escape(" - CUDA %s" % image.cuda) if image.cuda else "",
        )
        for i, image in enumerate(images)
    )
    gpu_options = "\n".join(
        '<option value="%d"%s>%s</option>' % (n, " selected" if n == 0 else "", plural(n))
        for n in range(may_take + 1)
    )
    lines = ["Your limit: %s at once (%s)." % (plural(limit.gpus), limit.source)]
    if availability is not None:
        lines.append(
            "%d of %d GPUs free on this hub. You hold %s."
            % (availability.free, availability.total, availability.held_text)
        )
    if budget_text:
        lines.append(budget_text)
    status = "".join("<p>%s</p>" % html.escape(line) for line in lines)
    return """
<div class="form-group">
  <label for="gpuspawner-image">Image</label>
  <select class="form-control" name="image" id="gpuspawner-image">%s</select>
</div>
<div class="form-group">
  <label for="gpuspawner-gpus">GPUs for %s</label>
  <select class="form-control" name="gpus" id="gpuspawner-gpus">%s</select>
  <div class="help-block" id="gpuspawner-gpu-status">%s</div>
</div>
""" % (image_options, html.escape(server_label(spawner.server_name)), gpu_options, status)
