# Golden values for evidence.stats.rma from metafor's rma.uni (metafor 3.8-1).
#
# Run from the repository root:  Rscript tests/golden/rma.R
# Writes tests/golden/rma.json (full precision). The tests read the JSON; R is not needed then.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

methods <- c("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM")
tests <- c("z", "t", "knha", "adhoc")

# ---------------------------------------------------------------- data sets
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
normand <- escalc(measure = "SMD", m1i = m1i, sd1i = sd1i, n1i = n1i,
                  m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
hackshaw <- dat.hackshaw1998
raudenbush <- dat.raudenbush1985
bangert <- dat.bangertdrowns2004
molloy <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
curtis <- escalc(measure = "ROM", m1i = m1i, sd1i = sd1i, n1i = n1i,
                 m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.curtis1998)

datasets <- list(
  bcg = list(data = bcg, cols = c("ablat", "year", "alloc"),
             source = "dat.bcg, escalc(measure='RR')"),
  normand1999 = list(data = normand, cols = c("source"),
                     source = "dat.normand1999, escalc(measure='SMD')"),
  hackshaw1998 = list(data = hackshaw, cols = c("year", "country", "design"),
                      source = "dat.hackshaw1998 (yi, vi given)"),
  raudenbush1985 = list(data = raudenbush, cols = c("weeks", "setting", "tester"),
                        source = "dat.raudenbush1985 (yi, vi given)"),
  bangertdrowns2004 = list(data = bangert, cols = c("grade", "length", "wic", "meta"),
                           source = "dat.bangertdrowns2004 (yi, vi given)"),
  molloy2014 = list(data = molloy, cols = c("meanage", "design"),
                    source = "dat.molloy2014, escalc(measure='ZCOR')"),
  curtis1998 = list(data = curtis, cols = c("fungrp", "time", "method"),
                    source = "dat.curtis1998, escalc(measure='ROM')")
)

# ---------------------------------------------------------------- helpers
num <- function(x) if (is.null(x)) NA else unname(as.numeric(x))

# jsonlite writes at most 15 significant digits; write every double with 17 (it reads back
# as the same double) as verbatim JSON: length-1 values as scalars (auto_unbox), I() and
# longer vectors as arrays, matrices by rows, NA/NaN/Inf as null.
fmt17 <- function(v) ifelse(is.finite(v), sprintf("%.17g", v), "null")
full_precision <- function(x) {
  if (is.list(x)) {
    y <- lapply(x, full_precision)
    names(y) <- names(x)
    return(y)
  }
  if (!is.double(x)) return(x)
  if (is.matrix(x)) {
    rows <- apply(x, 1, function(r) paste0("[", paste(fmt17(r), collapse = ","), "]"))
    return(structure(paste0("[", paste(rows, collapse = ","), "]"), class = "json"))
  }
  if (length(x) == 1 && !inherits(x, "AsIs")) return(structure(fmt17(x), class = "json"))
  structure(paste0("[", paste(fmt17(x), collapse = ","), "]"), class = "json")
}

capture <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(list(msg = conditionMessage(e)), class = "fail")),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  list(value = value, warnings = warns)
}

fitstats <- function(res) {
  fs <- res$fit.stats
  list(ML = as.list(setNames(num(fs$ML), c("logLik", "deviance", "AIC", "BIC", "AICc"))),
       REML = as.list(setNames(num(fs$REML), c("logLik", "deviance", "AIC", "BIC", "AICc"))))
}

summarise <- function(res) {
  out <- list(
    names = I(rownames(res$beta)),
    beta = I(num(res$beta)), se = I(num(res$se)), zval = I(num(res$zval)),
    pval = I(num(res$pval)), ci_lb = I(num(res$ci.lb)), ci_ub = I(num(res$ci.ub)),
    vb = unname(lapply(seq_len(nrow(res$vb)), function(i) I(num(res$vb[i, ])))),
    dfs = num(res$ddf), tau2 = num(res$tau2), se_tau2 = num(res$se.tau2),
    I2 = num(res$I2), H2 = num(res$H2), R2 = num(res$R2), QE = num(res$QE),
    QEp = num(res$QEp), QM = num(res$QM), QMdf = I(num(res$QMdf)), QMp = num(res$QMp),
    k = res$k, p = res$p, parms = res$parms, s2w = num(res$s2w), btt = I(res$btt),
    fit_stats = fitstats(res)
  )
  pr <- predict(res)
  out$predict <- list(pred = I(num(pr$pred)), se = I(num(pr$se)), ci_lb = I(num(pr$ci.lb)),
                      ci_ub = I(num(pr$ci.ub)), pi_lb = I(num(pr$pi.lb)),
                      pi_ub = I(num(pr$pi.ub)))
  out
}

fit_case <- function(args, with_confint = FALSE) {
  r <- capture(do.call(rma, args))
  if (inherits(r$value, "fail")) return(list(error = r$value$msg, warnings = I(r$warnings)))
  out <- summarise(r$value)
  out$warnings <- I(r$warnings)
  if (with_confint && !is.element(args$method, c("EE", "FE"))) {
    ci <- capture(confint(r$value))
    if (!inherits(ci$value, "fail")) {
      rnd <- ci$value$random
      out$confint_qp <- list(tau2 = I(num(rnd[1, ])), tau = I(num(rnd[2, ])),
                             I2 = I(num(rnd[3, ])), H2 = I(num(rnd[4, ])),
                             lb_sign = ci$value$lb.sign, ub_sign = ci$value$ub.sign)
    } else {
      out$confint_qp <- list(error = ci$value$msg)
    }
    if (is.element(args$method, c("ML", "REML"))) {
      ci <- capture(confint(r$value, type = "PL"))
      if (!inherits(ci$value, "fail")) {
        rnd <- ci$value$random
        out$confint_pl <- list(tau2 = I(num(rnd[1, ])), tau = I(num(rnd[2, ])),
                               I2 = I(num(rnd[3, ])), H2 = I(num(rnd[4, ])))
      }
    }
  }
  out
}

column <- function(x) {
  if (is.factor(x)) x <- as.character(x)
  if (is.numeric(x)) return(I(num(x)))
  I(x)
}

# ---------------------------------------------------------------- grid: data x method x test
out <- list(metafor_version = as.character(packageVersion("metafor")),
            methods = I(methods), tests = I(tests), datasets = list(), grid = list())
for (nm in names(datasets)) {
  d <- datasets[[nm]]$data
  cols <- list(yi = column(d$yi), vi = column(d$vi))
  for (cn in datasets[[nm]]$cols) cols[[cn]] <- column(d[[cn]])
  out$datasets[[nm]] <- list(source = datasets[[nm]]$source, columns = cols)
  for (m in methods) {
    for (t in tests) {
      key <- paste(nm, m, t, sep = "|")
      out$grid[[key]] <- fit_case(list(yi = d$yi, vi = d$vi, method = m, test = t),
                                  with_confint = (t == "z"))
    }
  }
}

# ---------------------------------------------------------------- meta-regression
mr <- list()
mr_specs <- list(
  list(id = "bcg~ablat+year", data = "bcg", mods = "ablat + year", f = ~ ablat + year),
  list(id = "bcg~C(alloc)", data = "bcg", mods = "C(alloc)", f = ~ alloc),
  list(id = "bcg~ablat+C(alloc)", data = "bcg", mods = "ablat + C(alloc)",
       f = ~ ablat + alloc),
  list(id = "bcg~ablat-1", data = "bcg", mods = "ablat - 1", f = ~ ablat - 1),
  list(id = "bcg~ablat*year", data = "bcg", mods = "ablat * year", f = ~ ablat * year),
  list(id = "raudenbush1985~weeks", data = "raudenbush1985", mods = "weeks", f = ~ weeks),
  list(id = "molloy2014~meanage", data = "molloy2014", mods = "meanage", f = ~ meanage),
  list(id = "curtis1998~C(fungrp)", data = "curtis1998", mods = "C(fungrp)",
       f = ~ fungrp),
  list(id = "bangertdrowns2004~grade+length", data = "bangertdrowns2004",
       mods = "grade + length", f = ~ grade + length),
  list(id = "hackshaw1998~C(design)", data = "hackshaw1998", mods = "C(design)",
       f = ~ design)
)
for (s in mr_specs) {
  d <- datasets[[s$data]]$data
  for (m in methods) {
    for (t in tests) {
      key <- paste(s$id, m, t, sep = "|")
      res <- fit_case(list(yi = d$yi, vi = d$vi, mods = s$f, data = d, method = m, test = t))
      res$data <- s$data
      res$mods <- s$mods
      res$method <- m
      res$test <- t
      mr[[key]] <- res
    }
  }
}
out$metareg <- mr

# btt subsets
bt <- list()
for (t in tests) {
  res <- fit_case(list(yi = bcg$yi, vi = bcg$vi, mods = ~ ablat + alloc, data = bcg,
                       method = "REML", test = t, btt = c(3, 4)))
  res$btt_in <- I(c(3, 4))
  bt[[paste0("bcg~ablat+C(alloc)|REML|", t, "|btt=3,4")]] <- res
}
out$btt <- bt

# predictions at new moderator values
r1 <- rma(yi, vi, mods = ~ ablat, data = bcg)
p1 <- predict(r1, newmods = c(10, 20, 30, 40, 50, 60))
r2 <- rma(yi, vi, mods = ~ ablat + year, data = bcg, test = "knha")
nm2 <- cbind(c(10, 30, 50), c(1950, 1960, 1970))
p2 <- predict(r2, newmods = nm2)
r3 <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "DL")
p3 <- predict(r3, newmods = c(0, 25, 55), level = 90)
pp <- function(p) list(pred = I(num(p$pred)), se = I(num(p$se)), ci_lb = I(num(p$ci.lb)),
                       ci_ub = I(num(p$ci.ub)), pi_lb = I(num(p$pi.lb)), pi_ub = I(num(p$pi.ub)))
out$predict_newmods <- list(
  list(data = "bcg", mods = "ablat", method = "REML", test = "z", level = 95,
       newmods = I(c(10, 20, 30, 40, 50, 60)), result = pp(p1)),
  list(data = "bcg", mods = "ablat + year", method = "REML", test = "knha", level = 95,
       newmods = lapply(1:3, function(i) I(nm2[i, ])), result = pp(p2)),
  list(data = "bcg", mods = "ablat", method = "DL", test = "z", level = 90,
       newmods = I(c(0, 25, 55)), result = pp(p3))
)

# ---------------------------------------------------------------- subgroups
sg <- list()
sg_specs <- list(list(data = "bcg", by = "alloc"), list(data = "curtis1998", by = "fungrp"),
                 list(data = "hackshaw1998", by = "design"))
for (s in sg_specs) {
  d <- datasets[[s$data]]$data
  for (m in c("REML", "DL", "EE")) {
    g <- as.character(d[[s$by]])
    levs <- sort(unique(g))
    per <- list()
    est <- se <- c()
    for (lv in levs) {
      sel <- g == lv
      r <- rma(d$yi[sel], d$vi[sel], method = m)
      per[[lv]] <- list(beta = num(r$beta), se = num(r$se), tau2 = num(r$tau2),
                        QE = num(r$QE), I2 = num(r$I2), k = r$k)
      est <- c(est, num(r$beta))
      se <- c(se, num(r$se))
    }
    between <- rma(est, sei = se, mods = ~ factor(levs), method = "FE")
    mixed <- rma(d$yi, d$vi, mods = ~ factor(g), method = m)
    common <- rma(d$yi, d$vi, mods = ~ factor(g) - 1, method = m)
    sg[[paste(s$data, s$by, m, sep = "|")]] <- list(
      data = s$data, by = s$by, method = m, levels = I(levs), subgroups = per,
      Q_between = num(between$QM), df_between = num(between$QMdf[1]),
      p_between = num(between$QMp), mixed_QM = num(mixed$QM), mixed_QMp = num(mixed$QMp),
      mixed_tau2 = num(mixed$tau2), common_beta = I(num(common$beta)),
      common_se = I(num(common$se)))
  }
}
out$subgroup <- sg

# ---------------------------------------------------------------- likelihood ratio tests
av <- function(a) list(LRT = num(a$LRT), pval = num(a$pval), parms_f = a$parms.f,
                       parms_r = a$parms.r, R2 = num(a$R2),
                       fit_f = as.list(num(a$fit.stats.f)), fit_r = as.list(num(a$fit.stats.r)))
f1 <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "ML")
f0 <- rma(yi, vi, data = bcg, method = "ML")
f2 <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "ML")
e1 <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "EE")
e0 <- rma(yi, vi, data = bcg, method = "EE")
m1 <- rma(yi, vi, mods = ~ weeks, data = raudenbush, method = "ML")
m0 <- rma(yi, vi, data = raudenbush, method = "ML")
out$anova <- list(
  list(data = "bcg", full = "ablat", reduced = "", method = "ML", result = av(anova(f1, f0))),
  list(data = "bcg", full = "ablat + year", reduced = "ablat", method = "ML",
       result = av(anova(f2, f1))),
  list(data = "bcg", full = "ablat", reduced = "", method = "EE", result = av(anova(e1, e0))),
  list(data = "raudenbush1985", full = "weeks", reduced = "", method = "ML",
       result = av(anova(m1, m0)))
)

# ---------------------------------------------------------------- printed output
prints <- list(
  list(data = "bcg", mods = "", method = "REML", test = "z",
       res = rma(yi, vi, data = bcg)),
  list(data = "bcg", mods = "ablat + C(alloc)", method = "REML", test = "knha",
       res = rma(yi, vi, mods = ~ ablat + alloc, data = bcg, test = "knha")),
  list(data = "bcg", mods = "", method = "EE", test = "z",
       res = rma(yi, vi, data = bcg, method = "EE")),
  list(data = "bcg", mods = "ablat + year", method = "EE", test = "z",
       res = rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "EE")),
  list(data = "normand1999", mods = "", method = "DL", test = "t",
       res = rma(yi, vi, data = normand, method = "DL", test = "t")),
  list(data = "curtis1998", mods = "C(fungrp)", method = "PM", test = "z",
       res = rma(yi, vi, mods = ~ fungrp, data = curtis, method = "PM")),
  list(data = "raudenbush1985", mods = "weeks", method = "ML", test = "z",
       res = rma(yi, vi, mods = ~ weeks, data = raudenbush, method = "ML"))
)
out$printed <- lapply(prints, function(p) list(
  data = p$data, mods = p$mods, method = p$method, test = p$test,
  text = paste(capture.output(print(p$res)), collapse = "\n")))

# ---------------------------------------------------------------- edge cases
edge <- list()
add_edge <- function(id, args) {
  res <- fit_case(args)
  res$input <- list(yi = I(num(args$yi)), vi = I(num(args$vi)), method = args$method,
                    test = if (is.null(args$test)) "z" else args$test)
  edge[[id]] <<- res
}
add_edge("k1_REML", list(yi = 0.5, vi = 0.1, method = "REML"))
add_edge("k1_REML_knha", list(yi = 0.5, vi = 0.1, method = "REML", test = "knha"))
for (m in c("REML", "DL", "PM", "ML", "EE")) {
  add_edge(paste0("k2_", m), list(yi = bcg$yi[1:2], vi = bcg$vi[1:2], method = m))
  add_edge(paste0("k2_", m, "_knha"),
           list(yi = bcg$yi[1:2], vi = bcg$vi[1:2], method = m, test = "knha"))
}
for (m in c("REML", "DL", "ML", "PM", "SJ", "HE")) {
  add_edge(paste0("identical_yi_", m),
           list(yi = rep(0.5, 5), vi = c(0.1, 0.2, 0.3, 0.4, 0.5), method = m))
}
for (m in c("REML", "DL", "HE", "ML")) {
  add_edge(paste0("vi_zero_", m),
           list(yi = bcg$yi[1:6], vi = c(0, bcg$vi[2:6]), method = m))
}
add_edge("na_yi_REML", list(yi = c(bcg$yi[1:5], NA, bcg$yi[7:13]), vi = bcg$vi, method = "REML"))
add_edge("huge_ratio_REML",
         list(yi = bcg$yi, vi = c(bcg$vi[1:12] * 1e-6, bcg$vi[13] * 1e4), method = "REML"))
# moderators: one constant within the data (dropped as redundant), a missing value, more
# parameters than effects (an error), as many parameters as effects in an EE model
add_edge_mods <- function(id, d, mods, method, test = "z") {
  res <- fit_case(list(yi = d$yi, vi = d$vi, mods = as.formula(paste("~", mods)), data = d,
                       method = method, test = test))
  cols <- lapply(d[setdiff(names(d), c("yi", "vi"))], column)
  res$input <- list(yi = I(num(d$yi)), vi = I(num(d$vi)), method = method, test = test,
                    mods = mods, columns = cols)
  edge[[id]] <<- res
}
bc <- data.frame(yi = bcg$yi, vi = bcg$vi, ablat = bcg$ablat, const = 2)
add_edge_mods("constant_moderator_REML", bc, "ablat + const", "REML")
add_edge_mods("constant_moderator_DL_knha", bc, "ablat + const", "DL", "knha")
add_edge_mods("constant_moderator_only_REML", bc, "const", "REML")
bc_na <- bc
bc_na$ablat[3] <- NA
add_edge_mods("na_moderator_REML", bc_na, "ablat", "REML")
add_edge_mods("p_gt_k_REML", bc[1:2, ], "ablat", "REML")
add_edge_mods("p_eq_k_EE", bc[1:2, ], "ablat", "EE")
out$edge <- edge

writeLines(toJSON(full_precision(out), auto_unbox = TRUE, null = "null", na = "null",
                  json_verbatim = TRUE, pretty = FALSE), "tests/golden/rma.json")
cat("wrote tests/golden/rma.json\n")
