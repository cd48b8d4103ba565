"""Log in, and report an incident."""

from __future__ import annotations

from edged.web.html import Safe, fmt
from edged.web.pages.layout import PageContext, csrf_field, layout


def render_login(ctx: PageContext, next_path: str, *, error: str | None = None, where: str | None = None,
                 refusal: str | None = None) -> Safe:
    if refusal:
        body = fmt('<p class="error" role="alert">{}</p>', refusal)
    else:
        hint = fmt('<p class="lead">Changes (incident reports, label corrections) need the token of this box.'
                   " Your administrator has it; on the box it is in <code>{}</code>.</p>", where or "the config")
        body = hint + fmt(
            """{error}<form method="post" action="/login" class="stack" id="login-form">
<input type="hidden" name="next" value="{next}">
<label><span>Token</span><input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label>
<div class="buttons"><button type="submit">Log in</button></div>
</form>""",
            error=fmt('<p class="error" role="alert">{}</p>', error) if error else "", next=next_path,
        )
    return layout(ctx, "Log in", fmt('<section class="card narrow"><h1>Log in</h1>{}</section>', body))


def render_submit(ctx: PageContext, *, machine: str = "", text: str = "", error: str | None = None,
                  refusal: str | None = None) -> Safe:
    if refusal:
        content = fmt('<p class="error" role="alert">{}</p>', refusal)
    elif not ctx.logged_in:
        content = Safe('<p class="lead">Log in first: reports need the token of this box.</p>'
                       '<p><a class="button" href="/login?next=/submit">Log in</a></p>')
    else:
        content = fmt(
            """<p class="lead">Describe what happened. The report is analyzed before any log line waiting, then sent
upstream with the results.</p>{error}<form method="post" action="/submit" class="stack" id="incident-form">{csrf}
<label><span>Machine</span><input type="text" name="machine" id="machine" value="{machine}" maxlength="120" placeholder="e.g. press-07"></label>
<label><span>What happened</span><textarea name="text" id="text" rows="7" maxlength="20000" required>{text}</textarea></label>
<div class="buttons"><button type="submit">Submit report</button></div>
</form>""",
            error=fmt('<p class="error" role="alert">{}</p>', error) if error else "", csrf=csrf_field(ctx),
            machine=machine, text=text,
        )
    return layout(ctx, "Report an incident", fmt('<section class="card narrow"><h1>Report an incident</h1>{}</section>', content))
