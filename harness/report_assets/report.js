// The answer browser of report.html: filters, pages and draws the answers embedded as JSON.
// Everything from the run is inserted as text (text nodes), never parsed as HTML, so an
// answer that holds markup shows as the characters it is. This file is inlined into the
// page, so it must never contain the closing tag of a script element (render_page checks).
"use strict";
(() => {
  const PAGE_SIZE = 20;
  const source = document.getElementById("report-data");
  const browser = document.getElementById("answer-browser");
  if (!source || !browser) return;
  const data = JSON.parse(source.textContent);
  const text = (index) => (index === null || index === undefined ? "" : data.strings[index]);

  const control = (name) => browser.querySelector(`[data-filter="${name}"]`);
  const list = browser.querySelector(".answer-list");
  const status = browser.querySelector(".answer-status");
  const pager = { previous: browser.querySelector("[data-page=previous]"), next: browser.querySelector("[data-page=next]"),
                  label: browser.querySelector(".page-label") };

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fillSelect(select, values, labels) {
    for (const value of values) {
      const option = el("option", null, labels ? labels[value] : value);
      option.value = value;
      select.append(option);
    }
  }

  const unique = (values) => [...new Set(values)];
  const answers = data.answers;
  fillSelect(control("run"), data.runs.map((run, index) => String(index)), data.runs.map((run) => run.name));
  fillSelect(control("task"), unique(answers.map((a) => a.task)).sort());
  fillSelect(control("student"), unique(answers.map((a) => a.student)).sort());
  fillSelect(control("judge"), unique(answers.flatMap((a) => a.verdicts.map((v) => v.judge))).sort());
  fillSelect(control("outcome"), [...Object.keys(data.outcomes), "ungraded"], { ...data.outcomes, ungraded: "not graded yet" });
  if (data.runs.length < 2) control("run").closest("label").hidden = true;

  let shown = answers;
  let page = 0;

  function haystack(answer) {
    if (answer.haystack === undefined) {
      const combination = data.combinations[answer.combination];
      answer.haystack = [text(answer.answer), combination.topic, ...combination.skills].join("\n").toLowerCase();
    }
    return answer.haystack;
  }

  function matches(answer, filter) {
    if (filter.run !== "" && String(answer.run) !== filter.run) return false;
    if (filter.task !== "" && answer.task !== filter.task) return false;
    if (filter.student !== "" && answer.student !== filter.student) return false;
    const verdicts = answer.verdicts.filter((v) => filter.judge === "" || v.judge === filter.judge);
    if (filter.judge !== "" && filter.outcome !== "ungraded" && verdicts.length === 0) return false;
    if (filter.outcome === "ungraded") {
      if (verdicts.length > 0 && (filter.judge !== "" || verdicts.length === data.runs[answer.run].judges.length)) return false;
    } else if (filter.outcome !== "" && !verdicts.some((v) => v.outcome === filter.outcome)) {
      return false;
    }
    return filter.search === "" || haystack(answer).includes(filter.search);
  }

  function applyFilters() {
    const filter = {};
    for (const name of ["run", "task", "student", "judge", "outcome"]) filter[name] = control(name).value;
    filter.search = control("search").value.trim().toLowerCase();
    shown = answers.filter((answer) => matches(answer, filter));
    page = 0;
    draw();
  }

  function formatPoint(value) {
    if (value === null || value === undefined) return "–";
    return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
  }

  const CORRECTION = {
    sentences: "code recounts the sentences and overrides the judge on this point",
    skill: "the answer names this skill, so the name penalty takes the point",
  };

  function pointCell(judgeValue, scoredValue, kind) {
    const cell = el("td", "point");
    const earned = scoredValue !== null && scoredValue !== undefined && scoredValue >= 1;
    cell.classList.add(scoredValue === null || scoredValue === undefined ? "point-none" : earned ? "point-yes" : "point-no");
    cell.append(formatPoint(scoredValue));
    if (judgeValue !== scoredValue && judgeValue !== undefined) {
      const judged = el("span", "point-judge", ` (judge: ${formatPoint(judgeValue)})`);
      judged.title = CORRECTION[kind] || "corrected by code";
      cell.append(judged);
    }
    return cell;
  }

  function gradeTable(answer, combination) {
    const table = el("table", "grades");
    const head = el("tr", null, el("th", null, "rubric item"));
    const judgesRow = el("tr", null, el("th", null, ""));
    for (const verdict of answer.verdicts) {
      const judgeHead = el("th", "judge-head", `judge ${verdict.judge}`);
      judgeHead.colSpan = verdict.runs.length + 1;
      head.append(judgeHead);
      for (const run of verdict.runs) judgesRow.append(el("th", run.usable ? null : "unusable", `run ${run.grading_run}` + (run.usable ? "" : " (unusable)")));
      judgesRow.append(el("th", "vote-head", "vote"));
    }
    table.append(el("thead", null, head, judgesRow));
    const body = el("tbody");
    combination.rubric.forEach((item, position) => {
      const kind = combination.kinds[position];
      const row = el("tr", null, el("th", `item item-${kind}`, item));
      for (const verdict of answer.verdicts) {
        for (const run of verdict.runs) row.append(pointCell(run.judge_points[position], run.scored_points[position], kind));
        const vote = verdict.vote ? verdict.vote[position] : null;
        const voteCell = pointCell(vote, vote, kind);
        voteCell.classList.add("vote");
        row.append(voteCell);
      }
      body.append(row);
    });
    table.append(body);
    return el("div", "table-scroll", table);
  }

  function collapsible(title, content, open) {
    const block = el("details", "collapsible", el("summary", null, title), content);
    block.open = Boolean(open);
    return block;
  }

  function answerBody(answer) {
    const combination = data.combinations[answer.combination];
    const facts = el("dl", "facts");
    const fact = (term, value) => facts.append(el("dt", null, term), el("dd", null, value));
    fact("skills", combination.skills.join(" · "));
    fact("topic", combination.topic);
    fact("task", `${answer.task} (k = ${answer.k}, ${answer.split})`);
    fact("student", `${answer.student}, generation round ${answer.generation_round}`);
    fact("sentences", `${answer.sentences} by the counting rule` + (answer.finish_reason && answer.finish_reason !== "stop" ? `; reply ended by ${answer.finish_reason}` : ""));
    const graded = el("section", "graded", el("h4", null, "Graded text"), el("pre", "text graded-text", text(answer.answer)));
    if (!answer.answer_marked) graded.append(el("p", "warning", "The reply had no \u201cAnswer:\u201d, so the whole last reply was graded."));
    const turns = el("section", "turns",
      el("h4", null, "Turn 1"), collapsible("prompt", el("pre", "text prompt", text(answer.turn1_prompt))), el("pre", "text reply", text(answer.turn1_reply)),
      el("h4", null, "Turn 2"), collapsible("prompt", el("pre", "text prompt", text(answer.turn2_prompt))), el("pre", "text reply", text(answer.turn2_reply)));
    const grades = el("section", "judging", el("h4", null, "Points per rubric item"));
    if (answer.verdicts.length === 0) {
      grades.append(el("p", "muted", "No judge has graded this answer yet."));
    } else {
      grades.append(gradeTable(answer, combination),
        el("p", "muted small", "Each grading run's points after the code-side corrections (the judge's own value in brackets where they differ); the vote is the strict majority of usable runs."));
      for (const verdict of answer.verdicts) {
        for (const run of verdict.runs) {
          const title = `judge ${verdict.judge} \u00b7 grading run ${run.grading_run} \u00b7 ${run.usable ? "usable" : "unusable"}, ${run.attempts} attempt${run.attempts === 1 ? "" : "s"} \u2014 raw reply`;
          grades.append(collapsible(title, el("pre", "text reply", text(run.reply))));
        }
      }
    }
    return el("div", "answer-body", facts, graded, grades, turns);
  }

  function answerRow(answer) {
    const combination = data.combinations[answer.combination];
    const badges = el("span", "badges");
    for (const verdict of answer.verdicts) {
      const badge = el("span", `badge outcome-${verdict.outcome}`, `${verdict.judge}: ${data.outcomes[verdict.outcome]}`);
      badges.append(badge);
    }
    if (answer.verdicts.length === 0) badges.append(el("span", "badge outcome-ungraded", "not graded yet"));
    const where = (data.runs.length > 1 ? `${data.runs[answer.run].name} \u00b7 ` : "") + `${answer.task} #${answer.combination} \u00b7 round ${answer.generation_round}`;
    const summary = el("summary", null,
      el("span", "where", where), el("span", "who", answer.student),
      el("span", "what", `${combination.skills.join(" + ")} \u2014 ${combination.topic}`), badges);
    const row = el("details", "answer", summary);
    row.addEventListener("toggle", () => {
      if (row.open && !row.dataset.drawn) {
        row.append(answerBody(answer));
        row.dataset.drawn = "1";
      }
    });
    return row;
  }

  function draw() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const first = page * PAGE_SIZE;
    const rows = shown.slice(first, first + PAGE_SIZE).map(answerRow);
    list.replaceChildren(...rows);
    if (rows.length === 0) list.append(el("p", "muted empty", "No answer matches these filters."));
    status.textContent = shown.length === 0 ? `0 of ${answers.length} answers`
      : `${first + 1}\u2013${first + rows.length} of ${shown.length} answers` + (shown.length < answers.length ? ` (filtered from ${answers.length})` : "");
    browser.dataset.shown = String(shown.length);
    pager.label.textContent = `page ${page + 1} of ${pages}`;
    pager.previous.disabled = page === 0;
    pager.next.disabled = page >= pages - 1;
  }

  for (const name of ["run", "task", "student", "judge", "outcome"]) control(name).addEventListener("change", applyFilters);
  control("search").addEventListener("input", applyFilters);
  browser.querySelector("[data-filter-reset]").addEventListener("click", () => {
    for (const name of ["run", "task", "student", "judge", "outcome"]) control(name).value = "";
    control("search").value = "";
    applyFilters();
  });
  pager.previous.addEventListener("click", () => { page -= 1; draw(); });
  pager.next.addEventListener("click", () => { page += 1; draw(); });
  browser.classList.add("ready");
  applyFilters();
})();
