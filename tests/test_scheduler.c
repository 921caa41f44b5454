/* test_scheduler.c - continuous batching on the demo model, without HTTP.
 *
 * More jobs than slots, of different prompt and output lengths, run
 * together and produce exactly the text a greedy decode of each alone gives
 * (the loop of `pregate run --temp 0`); two jobs with one seed give one
 * text; stop strings cut the text before the stop; a cancelled job frees its
 * slot; shutting down ends queued and running jobs, and nothing leaks
 * (SANITIZE=1). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "forward.h"
#include "server/scheduler.h"
#include "test.h"

#define MODEL "models/demo-moe.gguf"

static pg_model *model_;

/* The text `pregate run -p PROMPT -n N --temp 0` prints (without its newline). */
static char *greedy_alone_(const int32_t *ids, int n_ids, int n_predict) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new(model_, 256, 2, &e);
    PG_ASSERT(s && pg_session_eval(s, ids, n_ids, NULL, &e) == 0);
    pg_detok dt;
    pg_detok_init(&dt);
    pg_buf out = {0};
    char buf[1024];
    for (int i = 0; i < n_predict; i++) {
        int32_t tok = pg_argmax(s->logits, model_->hp.vocab);
        if (pg_tokenizer_is_eog(model_->tok, tok)) break;
        pg_buf_add(&out, buf, pg_detok_push(model_->tok, &dt, tok, buf, sizeof buf));
        if (i + 1 < n_predict) PG_ASSERT(pg_session_eval(s, &tok, 1, NULL, &e) == 0);
    }
    pg_buf_add(&out, buf, pg_detok_flush(&dt, buf, sizeof buf));
    pg_session_free(s);
    return out.s ? out.s : xstrdup("");
}

static int32_t *tokenize_(const char *text, int *n) {
    int32_t *ids;
    size_t k;
    pg_error e = {{0}};
    PG_ASSERT(pg_tokenize(model_->tok, text, strlen(text), pg_tokenizer_add_bos(model_->tok), false, &ids, &k, &e) == 0);
    *n = (int)k;
    return ids;
}

static pg_gen_params greedy_(int max_tokens) {
    pg_gen_params g = {.max_tokens = max_tokens};
    pg_sampler_params_default(&g.sp);
    g.sp.temperature = 0;
    return g;
}

/* Reads a job to its end. */
static char *read_all_(pg_job *j, pg_job_status *st) {
    pg_buf out = {0};
    size_t from = 0;
    while (!pg_job_read(j, 1000, &from, &out, st)) {}
    return out.s ? out.s : xstrdup("");
}

static const char *PROMPTS[] = {
    "Elizabeth looked at her sister and said",
    "It is a truth universally acknowledged",
    "Mr. Darcy",
    "The morning was fine, and the whole party walked out together towards the village, where Mrs. Bennet had",
    "She",
    "Upon my word,",
};
#define N_JOBS 6

static void test_batched_equals_alone(void) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new_seqs(model_, 256, 3, 2, &e);
    pg_sched *sc = pg_sched_new(s, &e);
    CHECK(sc != NULL, "%s", e.msg);
    if (!sc) { pg_session_free(s); return; }
    pg_job *jobs[N_JOBS];
    char *expect[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        int n;
        int32_t *ids = tokenize_(PROMPTS[i], &n);
        int max = 5 + 11 * i;
        expect[i] = greedy_alone_(ids, n, max);
        pg_gen_params g = greedy_(max);
        jobs[i] = pg_job_new(ids, n, &g);
        CHECK(pg_sched_submit(sc, jobs[i], &e) == 0, "%s", e.msg);
        free(ids);
    }
    for (int i = 0; i < N_JOBS; i++) {
        pg_job_status st;
        char *got = read_all_(jobs[i], &st);
        CHECK(!strcmp(got, expect[i]), "job %d: batched '%s' != alone '%s'", i, got, expect[i]);
        CHECK(st.finish == PG_FINISH_LENGTH || st.finish == PG_FINISH_STOP, "job %d finish %d", i, st.finish);
        int n_tok;
        CHECK(pg_job_tokens(jobs[i], &n_tok) && n_tok == st.n_gen, "job %d: %d token ids, %d generated", i, n_tok,
              st.n_gen);
        free(got);
        free(expect[i]);
        pg_job_unref(jobs[i]);
    }
    pg_sched_metrics mt;
    pg_sched_get_metrics(sc, &mt);
    CHECK(mt.jobs_done == N_JOBS && mt.active == 0 && mt.queued == 0, "metrics: done %llu active %d queued %d",
          (unsigned long long)mt.jobs_done, mt.active, mt.queued);
    CHECK(mt.batch_rows > mt.steps, "batches had more than one row on average (%llu rows in %llu steps)",
          (unsigned long long)mt.batch_rows, (unsigned long long)mt.steps);
    fprintf(stderr, "  %d jobs on 3 slots: %llu rows in %llu steps, identical to each alone\n", N_JOBS,
            (unsigned long long)mt.batch_rows, (unsigned long long)mt.steps);
    pg_sched_free(sc);
    pg_session_free(s);
}

static void test_seed_and_stop(void) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new_seqs(model_, 256, 4, 2, &e);
    pg_sched *sc = pg_sched_new(s, &e);
    int n;
    int32_t *ids = tokenize_(PROMPTS[0], &n);
    /* sampled, one seed: the same text, whatever runs beside it */
    pg_gen_params g = greedy_(40);
    g.sp.temperature = 0.9f;
    g.sp.seed = 1234;
    pg_job *a = pg_job_new(ids, n, &g), *b = pg_job_new(ids, n, &g);
    g.sp.seed = 99;
    pg_job *c = pg_job_new(ids, n, &g);
    pg_sched_submit(sc, a, &e);
    pg_sched_submit(sc, c, &e);
    pg_sched_submit(sc, b, &e);
    pg_job_status st;
    char *ta = read_all_(a, &st), *tb = read_all_(b, &st), *tc = read_all_(c, &st);
    CHECK(!strcmp(ta, tb), "same seed, different text: '%s' / '%s'", ta, tb);
    CHECK(strcmp(ta, tc), "another seed, same text (unlikely): '%s'", tc);
    /* stop strings: the text ends before the first one */
    char *full = greedy_alone_(ids, n, 60);
    const char *cut = strstr(full + 5, " ");
    char stop_word[32] = {0};
    if (cut) memcpy(stop_word, cut, strcspn(cut + 1, " \n") + 1 < 31 ? strcspn(cut + 1, " \n") + 1 : 31);
    CHECK(strlen(stop_word) > 1, "a stop word from '%s'", full);
    char *stops[] = {"zzzz-never", stop_word};
    pg_gen_params gs = greedy_(60);
    gs.stop = stops;
    gs.n_stop = 2;
    pg_job *d = pg_job_new(ids, n, &gs);
    pg_sched_submit(sc, d, &e);
    char *td = read_all_(d, &st);
    size_t at = (size_t)(strstr(full, stop_word) - full);
    CHECK(st.finish == PG_FINISH_STOP && strlen(td) == at && !strncmp(td, full, at),
          "stop '%s': got '%s' (finish %d), expected the first %zu bytes of '%s'", stop_word, td, st.finish, at, full);
    free(ta); free(tb); free(tc); free(td); free(full); free(ids);
    pg_job_unref(a); pg_job_unref(b); pg_job_unref(c); pg_job_unref(d);
    pg_sched_free(sc);
    pg_session_free(s);
}

static void test_cancel_and_shutdown(void) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new_seqs(model_, 256, 2, 2, &e);
    pg_sched *sc = pg_sched_new(s, &e);
    int n;
    int32_t *ids = tokenize_(PROMPTS[1], &n);
    pg_gen_params g = greedy_(200);
    g.ignore_eos = true;
    pg_job *jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = pg_job_new(ids, n, &g);
        pg_sched_submit(sc, jobs[i], &e);
    }
    /* one running (or queued) job cancelled: it ends as cancelled, and its
     * slot goes to the queue */
    pg_job_cancel(jobs[0]);
    pg_job_status st;
    char *t = read_all_(jobs[0], &st);
    CHECK(st.finish == PG_FINISH_CANCELLED, "cancelled job finished with %d", st.finish);
    free(t);
    pg_job_cancel(jobs[4]); /* still queued: dropped from the queue */
    t = read_all_(jobs[4], &st);
    CHECK(st.finish == PG_FINISH_CANCELLED && st.n_gen == 0, "queued job: finish %d, %d tokens", st.finish, st.n_gen);
    free(t);
    pg_sched_metrics mt;
    pg_sched_get_metrics(sc, &mt);
    CHECK(mt.cancelled == 2, "%llu cancelled", (unsigned long long)mt.cancelled);
    /* shutting down ends the rest; a submit afterwards is refused */
    pg_sched_shutdown(sc);
    for (int i = 1; i < 4; i++) {
        t = read_all_(jobs[i], &st);
        CHECK(st.finish != PG_FINISH_NONE, "job %d still running after shutdown", i);
        CHECK(st.finish != PG_FINISH_ERROR || strstr(st.error, "shutting down"), "job %d: %s", i, st.error);
        free(t);
    }
    pg_job *late = pg_job_new(ids, n, &g);
    CHECK(pg_sched_submit(sc, late, &e) != 0 && strstr(e.msg, "shutting down"), "submit after shutdown: %s", e.msg);
    pg_job_unref(late);
    for (int i = 0; i < 5; i++) pg_job_unref(jobs[i]);
    free(ids);
    pg_sched_free(sc);
    pg_session_free(s);
}

int main(void) {
    if (access(MODEL, R_OK)) {
        test_current_ = "test_scheduler";
        test_skipped_++;
        fprintf(stderr, "SKIP test_scheduler: %s missing\n", MODEL);
        return test_summary("test_scheduler");
    }
    pg_error e = {{0}};
    model_ = pg_model_open(MODEL, &e);
    if (!model_) {
        fprintf(stderr, "FAIL test_scheduler: %s\n", e.msg);
        return 1;
    }
    TEST_RUN(test_batched_equals_alone);
    TEST_RUN(test_seed_and_stop);
    TEST_RUN(test_cancel_and_shutdown);
    pg_model_free(model_);
    return test_summary("test_scheduler");
}
