/// The report templates (Mustache). Every `{{value}}` is escaped by the template's content type:
/// HTML for summary.html, Markdown for summary.md. No template uses `{{{…}}}`: nothing reaches the
/// files unescaped, and the SVG is drawn by the template from numbers, not pasted in.
enum Templates {
    static let html = #"""
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
        <title>{{title}}</title>
        <style>
        :root { --ink: #1d2733; --muted: #5b6773; --line: #d9dee4; --bg: #ffffff; --panel: #f5f7f9; --good: #2e7d32; --bad: #c62828; }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif; }
        main { max-width: 980px; margin: 0 auto; padding: 20px 16px 40px; }
        h1 { font-size: 1.45rem; margin: 0 0 4px; }
        h2 { font-size: 1.12rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
        h3 { font-size: 0.98rem; margin: 16px 0 6px; }
        p { margin: 6px 0; }
        .muted { color: var(--muted); }
        .small { font-size: 0.86rem; }
        bdi, td, th, .id { unicode-bidi: isolate; }
        .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; overflow-wrap: anywhere; }
        td .id, td.id { white-space: nowrap; }
        .status { display: inline-block; padding: 1px 10px; border-radius: 10px; font-size: 0.85rem; font-weight: 600; color: #fff; vertical-align: middle; }
        .status.completed { background: var(--good); } .status.running, .status.interrupted { background: #b26a00; } .status.failed { background: var(--bad); }
        .note { background: #fff6e0; border-left: 4px solid #f0a500; padding: 8px 12px; margin: 10px 0; }
        .tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(118px, 1fr)); gap: 10px; margin: 16px 0 4px; }
        .tile { background: var(--panel); border-radius: 8px; padding: 10px 12px; }
        .tile .value { font-size: 1.5rem; font-weight: 650; line-height: 1.2; }
        .tile .label { font-size: 0.82rem; color: var(--muted); }
        .tile.bad .value { color: var(--bad); } .tile.good .value { color: var(--good); }
        .scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
        table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
        th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-weight: 600; color: var(--muted); font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.02em; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 8px 0 12px; font-size: 0.84rem; padding: 0; list-style: none; }
        .legend li { display: flex; align-items: center; gap: 5px; }
        .swatch { width: 12px; height: 12px; border-radius: 2px; display: inline-block; flex: none; }
        .bar-row { margin: 8px 0 12px; }
        .bar-head { display: flex; justify-content: space-between; gap: 8px; font-size: 0.88rem; }
        .bar-head .id { font-weight: 600; }
        svg.bar { display: block; width: 100%; height: 22px; border-radius: 3px; background: var(--panel); }
        svg.chart { display: block; width: 100%; max-width: 640px; height: auto; }
        svg text { font-family: inherit; fill: var(--muted); }
        .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 16px 24px; }
        @media (max-width: 420px) { .charts { grid-template-columns: 1fr; } }
        .hist td.barcell { width: 60%; }
        svg.hbar { display: block; width: 100%; height: 14px; }
        .todo { list-style: none; padding: 0; margin: 8px 0; }
        .todo li { display: grid; grid-template-columns: 4.2em 1fr; gap: 2px 10px; padding: 7px 0; border-bottom: 1px solid var(--line); }
        .todo .n { font-weight: 650; font-size: 1.1rem; text-align: right; font-variant-numeric: tabular-nums; }
        .todo .what { font-weight: 600; } .todo .action { grid-column: 2; color: var(--ink); }
        .delta-bad { color: var(--bad); font-weight: 600; } .delta-good { color: var(--good); font-weight: 600; }
        .yes { color: var(--good); } .no { color: var(--bad); } .maybe, .unknown { color: #b26a00; }
        footer { margin-top: 36px; font-size: 0.8rem; color: var(--muted); }
        @media (max-width: 560px) { body { font-size: 14px; } main { padding: 12px 10px 30px; } .tile .value { font-size: 1.25rem; } th, td { padding: 4px 5px; } }
        @media print {
          * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
          body { font-size: 11pt; } main { max-width: none; padding: 0; }
          h2 { break-after: avoid; } section, .bar-row, tr, .tile, svg { break-inside: avoid; }
          .scroll { overflow: visible; }
        }
        </style>
        </head>
        <body>
        <main>
        <header>
        <h1>{{title}} <span class="status {{status}}">{{status}}</span></h1>
        <p class="muted">Started {{startedAt}} · {{durationText}} · table <bdi class="id">{{agencyTable}}</bdi>{{#resumed}} · worked by {{processes}} processes (interrupted and resumed; each message counted once){{/resumed}}</p>
        {{#hasLastError}}<p class="note">Last error: <bdi>{{lastError}}</bdi></p>{{/hasLastError}}
        {{#notFinished}}<p class="note">This run has not finished: the numbers are as they stand now. {{unsettledText}}</p>{{/notFinished}}
        </header>

        <section class="tiles" aria-label="Key numbers">
        {{#tiles}}<div class="tile {{tileClass}}"><div class="value">{{value}}</div><div class="label">{{caption}}</div></div>
        {{/tiles}}
        </section>
        {{#comparison}}<p>{{headline}}</p>{{/comparison}}

        <section>
        <h2>Outcome per campaign</h2>
        <p class="muted small">Each bar is one campaign's failed rows in scope: what the retry did, and what was skipped and why. Hover or tap a segment for its count.</p>
        <ul class="legend">
        {{#legend}}<li><span class="swatch" style="background: {{color}}"></span>{{name}}</li>
        {{/legend}}
        </ul>
        {{#bars}}<div class="bar-row">
        <div class="bar-head"><bdi class="id">{{campaignId}}</bdi><span class="muted">{{caption}}</span></div>
        <svg class="bar" viewBox="0 0 1000 22" preserveAspectRatio="none" role="img" aria-label="{{ariaLabel}}">{{#segments}}<rect x="{{x}}" y="0" width="{{width}}" height="22" fill="{{color}}"><title>{{name}}: {{count}}</title></rect>{{/segments}}</svg>
        </div>
        {{/bars}}
        {{^bars}}<p class="muted">No failed rows were in scope.</p>{{/bars}}
        <div class="scroll"><table>
        <thead><tr><th>Campaign</th><th class="num">Selected</th><th class="num">Succeeded</th><th class="num">Failed again</th><th class="num">Pending</th><th class="num">Exhausted</th><th class="num">Other</th><th class="num">Skipped</th><th class="num">Carried over</th></tr></thead>
        <tbody>
        {{#campaignRows}}<tr><td><bdi class="id">{{campaignId}}</bdi></td><td class="num">{{selected}}</td><td class="num">{{succeeded}}</td><td class="num">{{failed}}</td><td class="num">{{pending}}</td><td class="num">{{exhausted}}</td><td class="num">{{other}}</td><td class="num">{{skipped}}</td><td class="num">{{carriedOver}}</td></tr>
        {{/campaignRows}}
        </tbody>
        </table></div>
        <p class="muted small">Other: {{otherText}}. Skipped: {{skippedText}}.</p>
        </section>

        <section>
        <h2>Request rate</h2>
        <p class="muted small">Requests sent to Postman in each second (retries and reads together), against the campaign's configured limit (dashed). Red ticks: seconds with a 429 answer. {{totalCallsText}}</p>
        {{#batchCallLines}}<p class="small">{{.}}</p>
        {{/batchCallLines}}
        <div class="charts">
        {{#rates}}<figure style="margin: 0">
        <figcaption><bdi class="id">{{campaignId}}</bdi> <span class="muted small">· {{caption}}</span></figcaption>
        {{#hasSeconds}}<svg class="chart" viewBox="0 0 {{chartWidth}} {{chartHeight}}" role="img" aria-label="{{ariaLabel}}">
        <rect x="{{plotLeft}}" y="{{plotTop}}" width="{{plotWidth}}" height="{{plotHeight}}" fill="#f5f7f9"/>
        {{#yTicks}}<line x1="{{plotLeft}}" x2="{{plotRight}}" y1="{{pos}}" y2="{{pos}}" stroke="#d9dee4" stroke-width="1"/><text x="{{labelPos}}" y="{{textPos}}" font-size="12" text-anchor="end">{{text}}</text>
        {{/yTicks}}
        {{#xTicks}}<text x="{{pos}}" y="{{textPos}}" font-size="12" text-anchor="middle">{{text}}</text>
        {{/xTicks}}
        {{#hasLimit}}<line x1="{{plotLeft}}" x2="{{plotRight}}" y1="{{limitY}}" y2="{{limitY}}" stroke="#c62828" stroke-width="1.6" stroke-dasharray="7 5"/><text x="{{limitTextX}}" y="{{limitTextY}}" font-size="12" style="fill: #c62828">limit {{limit}}/s</text>{{/hasLimit}}
        <polyline points="{{points}}" fill="none" stroke="#1565c0" stroke-width="1.8" stroke-linejoin="round"/>
        {{#marks}}<line x1="{{pos}}" x2="{{pos}}" y1="{{markTop}}" y2="{{plotBottom}}" stroke="#c62828" stroke-width="2"/>
        {{/marks}}
        </svg>{{/hasSeconds}}
        {{^hasSeconds}}<p class="muted small">No requests recorded for this campaign.</p>{{/hasSeconds}}
        </figure>
        {{/rates}}
        </div>
        {{^rates}}<p class="muted">No requests were sent in this run.</p>{{/rates}}
        </section>

        <section>
        <h2>Time to outcome</h2>
        {{#outcome}}<p class="muted small">From the accepted retry to the job seeing its final status ({{count}} retries; polling makes these upper bounds). Median {{median}}, 90th percentile {{p90}}, slowest {{slowest}}.</p>
        <div class="scroll"><table class="hist">
        <thead><tr><th>Time</th><th>Retries</th><th class="num">Count</th></tr></thead>
        <tbody>
        {{#buckets}}<tr><td>{{range}}</td><td class="barcell"><svg class="hbar" viewBox="0 0 100 14" preserveAspectRatio="none" aria-hidden="true"><rect x="0" y="1" width="{{barWidth}}" height="12" fill="#1565c0"/></svg></td><td class="num">{{count}}</td></tr>
        {{/buckets}}
        </tbody>
        </table></div>{{/outcome}}
        {{^outcome}}<p class="muted">No retry reached a final status in this run.</p>{{/outcome}}
        </section>

        <section>
        <h2>Why retries failed again</h2>
        {{#hasCodes}}<div class="scroll"><table>
        <thead><tr><th>Code</th><th class="num">Messages</th><th>Meaning</th></tr></thead>
        <tbody>
        {{#codes}}<tr><td><bdi class="id">{{code}}</bdi></td><td class="num">{{count}}</td><td>{{meaning}}<br><span class="small">Worth retrying: <b class="{{worthClass}}">{{worth}}</b> · billed: {{charged}}</span></td></tr>
        {{/codes}}
        </tbody>
        </table></div>
        <p class="muted small">Meanings and advice from Postman's delivery-error page; "maybe" is Postman's own word for codes where a retry can help.</p>{{/hasCodes}}
        {{^hasCodes}}<p class="muted">No retry failed again.</p>{{/hasCodes}}
        {{#hasRejected}}<h3>Refused by Postman</h3>
        <div class="scroll"><table><thead><tr><th>Code</th><th class="num">Messages</th></tr></thead><tbody>
        {{#rejected}}<tr><td><bdi class="id">{{code}}</bdi></td><td class="num">{{count}}</td></tr>
        {{/rejected}}
        </tbody></table></div>{{/hasRejected}}
        </section>

        <section>
        <h2>Estimated cost of the retries</h2>
        {{#cost}}<div class="scroll"><table>
        <thead><tr><th>Retries</th><th class="num">Count</th><th class="num">Per segment</th><th class="num">{{currency}}</th></tr></thead>
        <tbody>
        {{#lines}}<tr><td>{{what}}</td><td class="num">{{messages}}</td><td class="num">{{price}}</td><td class="num">{{amount}}</td></tr>
        {{/lines}}
        <tr><td>Subtotal</td><td></td><td></td><td class="num">{{subtotal}}</td></tr>
        <tr><td>GST {{gstRate}}</td><td></td><td></td><td class="num">{{gst}}</td></tr>
        <tr><th>Total</th><td></td><td></td><th class="num">{{currency}} {{total}}</th></tr>
        </tbody>
        </table></div>
        <p class="muted small">{{assumptions}}</p>{{/cost}}
        </section>

        <section>
        <h2>Compared with the previous run</h2>
        {{#comparison}}<div class="scroll"><table>
        <thead><tr><th></th><th class="num">This run ({{runId}})</th><th class="num">Run {{previousId}}</th><th class="num">Change</th></tr></thead>
        <tbody>
        {{#rows}}<tr><td>{{metric}}</td><td class="num">{{now}}</td><td class="num">{{before}}</td><td class="num {{deltaClass}}">{{delta}}</td></tr>
        {{/rows}}
        </tbody>
        </table></div>{{/comparison}}
        {{^comparison}}<p class="muted">No earlier completed run to compare with.</p>{{/comparison}}
        </section>

        <section>
        <h2>Needs a person ({{attentionCount}})</h2>
        {{#hasAttention}}<p>Each of these messages is a row of <b>failures.csv</b>, with its ids, masked number, code and the suggested action.</p>
        <ul class="todo">
        {{#attentionGroups}}<li><span class="n">{{count}}</span><span><span class="what">{{name}}</span>{{#hasCode}} · <bdi class="id">{{code}}</bdi>{{/hasCode}}</span><span class="action">{{action}}</span></li>
        {{/attentionGroups}}
        </ul>
        <h3>The first {{attentionShownCount}}</h3>
        <div class="scroll"><table>
        <thead><tr><th>What</th><th>Campaign</th><th>Message</th><th>Recipient</th><th>Code</th></tr></thead>
        <tbody>
        {{#attention}}<tr><td>{{category}}</td><td><bdi class="id">{{campaignId}}</bdi></td><td><bdi class="id">{{messageId}}</bdi></td><td class="id">{{recipient}}</td><td><bdi class="id">{{code}}</bdi></td></tr>
        {{/attention}}
        </tbody>
        </table></div>
        {{#attentionMore}}<p class="muted small">… and {{attentionMoreCount}} more in failures.csv.</p>{{/attentionMore}}{{/hasAttention}}
        {{^hasAttention}}<p class="muted">Nothing needs a person.</p>{{/hasAttention}}
        {{#hasUnknownStatuses}}<h3>Statuses the job does not know</h3>
        <p class="muted small">Treated as in flight; worth telling the team that maintains the job.</p>
        <div class="scroll"><table><thead><tr><th>Campaign</th><th>Message</th><th>Status</th></tr></thead><tbody>
        {{#unknownStatuses}}<tr><td><bdi class="id">{{campaignId}}</bdi></td><td><bdi class="id">{{messageId}}</bdi></td><td><bdi class="id">{{status}}</bdi></td></tr>
        {{/unknownStatuses}}
        </tbody></table></div>{{/hasUnknownStatuses}}
        </section>

        <footer>
        <p>postman-retry report of run {{runId}}, generated {{generatedAt}}. Times are UTC. Phone numbers are masked. Files beside this one: summary.md, summary.json, failures.csv.</p>
        </footer>
        </main>
        </body>
        </html>
        """#

    static let markdown = #"""
        {{% CONTENT_TYPE: MARKDOWN}}
        ## postman-retry run {{runId}}: {{status}}

        Started {{startedAt}}, {{durationText}}, table {{agencyTable}}.{{#resumed}} Worked by {{processes}} processes (interrupted and resumed; each message counted once).{{/resumed}}{{#notFinished}} **Not finished: numbers as they stand now.** {{unsettledText}}{{/notFinished}}

        **{{retried}} retried of {{selected}} selected: {{succeeded}} succeeded, {{failed}} failed again, {{pending}} pending.** {{exhausted}} exhausted, {{otherCount}} other ({{otherText}}), {{skipped}} skipped ({{skippedText}}), {{carriedOver}} carried over from earlier runs.{{#comparison}} {{headline}}{{/comparison}}

        | campaign | selected | succeeded | failed again | pending | exhausted | other | skipped |
        |---|---:|---:|---:|---:|---:|---:|---:|
        {{#campaignRows}}| {{campaignId}} | {{selected}} | {{succeeded}} | {{failed}} | {{pending}} | {{exhausted}} | {{other}} | {{skipped}} |
        {{/campaignRows}}

        {{#hasCodes}}- Failed again by code: {{#codes}}{{code}} {{count}} ({{worthShort}}){{^last}}, {{/last}}{{/codes}}.
        {{/hasCodes}}
        {{#cost}}- Estimated cost: **{{currency}} {{total}}** incl. GST ({{localCount}} local, {{foreignCount}} foreign, {{freeCount}} not billed).
        {{/cost}}
        - API calls: {{retryCalls}} retry, {{pollCalls}} read, {{rateLimitedCalls}} answered 429. Busiest second: {{peakText}}.
        {{#batchCallLines}}- Whole-batch retry: {{.}}.
        {{/batchCallLines}}
        **Needs a person: {{attentionCount}}**{{#hasAttention}} ({{#attentionByCategory}}{{count}} {{name}}{{^last}}, {{/last}}{{/attentionByCategory}}); see failures.csv{{/hasAttention}}.
        """#
}
