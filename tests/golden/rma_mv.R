# Golden values for evidence.stats.rma_mv / robust / wald_test / impute_covariance.
# Run from the repository root:  Rscript tests/golden/rma_mv.R
# Writes tests/golden/rma_mv.json (full precision). metafor 3.8-1, clubSandwich 0.5.8.
suppressMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})

num <- function(x) if (is.null(x)) NULL else unname(as.numeric(x))

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

# ------------------------------------------------------------------ data sets
sim_three <- function(seed, m, x_mod = FALSE) {
  set.seed(seed)
  n <- sample(1:6, m, replace = TRUE)
  study <- rep(seq_len(m), n)
  es_id <- sequence(n)
  k <- length(study)
  vi <- runif(k, 0.01, 0.12)
  u <- rnorm(m, 0, sqrt(0.08))[study]
  w <- rnorm(k, 0, sqrt(0.03))
  x <- round(runif(m, -1, 1), 3)[study]
  z <- rbinom(k, 1, 0.4)
  mu <- 0.3 + if (x_mod) 0.2 * x - 0.15 * z else 0
  yi <- round(mu + u + w + rnorm(k, 0, sqrt(vi)), 6)
  data.frame(study = study, es_id = es_id, yi = yi, vi = round(vi, 6), x = x, z = z)
}
sim_four <- function(seed) {
  set.seed(seed)
  rows <- list()
  for (d in 1:14) {
    for (s in seq_len(sample(2:4, 1))) {
      for (o in seq_len(sample(1:3, 1))) rows[[length(rows) + 1]] <- c(d, s, o)
    }
  }
  g <- as.data.frame(do.call(rbind, rows))
  names(g) <- c("district", "school", "outcome")
  k <- nrow(g)
  vi <- runif(k, 0.01, 0.08)
  ud <- rnorm(14, 0, sqrt(0.06))[g$district]
  sid <- as.integer(factor(paste(g$district, g$school)))
  us <- rnorm(max(sid), 0, sqrt(0.03))[sid]
  uo <- rnorm(k, 0, sqrt(0.02))
  g$yi <- round(0.2 + ud + us + uo + rnorm(k, 0, sqrt(vi)), 6)
  g$vi <- round(vi, 6)
  g
}
sim_five <- function(seed) {
  # four nested random levels (a five-level model): district/school/class/outcome
  set.seed(seed)
  rows <- list()
  for (d in 1:12) {
    for (s in seq_len(sample(2:3, 1))) {
      for (c in seq_len(sample(1:3, 1))) {
        for (o in seq_len(sample(1:2, 1))) rows[[length(rows) + 1]] <- c(d, s, c, o)
      }
    }
  }
  g <- as.data.frame(do.call(rbind, rows))
  names(g) <- c("district", "school", "class", "outcome")
  k <- nrow(g)
  vi <- runif(k, 0.01, 0.06)
  sid <- as.integer(factor(paste(g$district, g$school)))
  cid <- as.integer(factor(paste(g$district, g$school, g$class)))
  g$yi <- round(0.2 + rnorm(12, 0, sqrt(0.06))[g$district] + rnorm(max(sid), 0, sqrt(0.03))[sid] +
                  rnorm(max(cid), 0, sqrt(0.02))[cid] + rnorm(k, 0, sqrt(0.015)) +
                  rnorm(k, 0, sqrt(vi)), 6)
  g$vi <- round(vi, 6)
  g
}

datasets <- list(
  konstantopoulos2011 = dat.konstantopoulos2011[, c("district", "school", "year", "yi", "vi")],
  assink2016 = dat.assink2016[, c("study", "esid", "yi", "vi", "year", "deltype")],
  sim1 = sim_three(20240501, 40),
  sim2 = sim_three(20240502, 60, x_mod = TRUE),
  sim3 = sim_four(20240503),
  sim4 = sim_five(20240504)
)

# model specifications: data set, random levels, mods formula (NULL = intercept only)
specs <- list(
  list(id = "k11", data = "konstantopoulos2011", random = c("district", "school"), mods = NULL,
       cluster = "district"),
  list(id = "a16", data = "assink2016", random = c("study", "esid"), mods = NULL,
       cluster = "study"),
  list(id = "a16_mods", data = "assink2016", random = c("study", "esid"),
       mods = "deltype + year", cluster = "study"),
  list(id = "sim1", data = "sim1", random = c("study", "es_id"), mods = NULL, cluster = "study"),
  list(id = "sim2_mods", data = "sim2", random = c("study", "es_id"), mods = "x + z",
       cluster = "study"),
  list(id = "sim3", data = "sim3", random = c("district", "school", "outcome"), mods = NULL,
       cluster = "district"),
  list(id = "sim4", data = "sim4", random = c("district", "school", "class", "outcome"),
       mods = NULL, cluster = "district")
)

rand_formula <- function(levels) as.formula(paste("~ 1 |", paste(levels, collapse = "/")))
mods_formula <- function(m) if (is.null(m)) NULL else as.formula(paste("~", m))

fit_model <- function(s, method, test, dfs, V = NULL, sigma2 = NULL, tight = TRUE) {
  dat <- datasets[[s$data]]
  args <- list(yi = dat$yi, V = if (is.null(V)) dat$vi else V, random = rand_formula(s$random),
               data = dat, method = method, test = test, dfs = dfs)
  if (!is.null(s$mods)) args$mods <- mods_formula(s$mods)
  if (!is.null(sigma2)) args$sigma2 <- sigma2
  # metafor's default optimiser (nlminb, rel.tol = 1e-10) stops up to ~1e-6 (relative) away
  # from the optimum of sigma2. Fit with the default and with tighter optimisers and keep the
  # fit with the highest (restricted) log-likelihood, so that the golden values are the
  # optimum to ~1e-8 rather than the optimiser's stopping noise.
  best <- do.call(rma.mv, args)
  for (ctrl in if (tight) tight_controls else list()) {
    res <- try(do.call(rma.mv, c(args, list(control = ctrl))), silent = TRUE)
    if (!inherits(res, "try-error") && logLik(res) > logLik(best)) best <- res
  }
  best
}
tight_controls <- list(list(rel.tol = 1e-12),
                       list(optimizer = "nlm", gradtol = 1e-12, steptol = 1e-14),
                       list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15))

i2_levels <- function(res) {
  W <- solve(res$V)
  X <- model.matrix(res)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  100 * res$sigma2 / (sum(res$sigma2) + (res$k - res$p) / sum(diag(P)))
}

fit_out <- function(res) {
  fs <- fitstats(res, REML = FALSE)
  fr <- fitstats(res, REML = TRUE)
  list(
    names = rownames(res$beta), beta = num(res$beta), se = num(res$se), zval = num(res$zval),
    pval = num(res$pval), ci_lb = num(res$ci.lb), ci_ub = num(res$ci.ub), ddf = num(res$ddf),
    vb = unname(res$vb), sigma2 = num(res$sigma2), s_nlevels = num(res$s.nlevels),
    QE = num(res$QE), QEp = num(res$QEp), QM = num(res$QM), QMdf = num(res$QMdf),
    QMp = num(res$QMp), k = res$k, p = res$p, parms = res$parms,
    fit_ML = num(res$fit.stats$ML), fit_REML = num(res$fit.stats$REML),
    I2_levels = num(i2_levels(res))
  )
}

pred_out <- function(res, newmods = NULL) {
  pr <- if (is.null(newmods)) predict(res) else predict(res, newmods = newmods)
  list(newmods = num(newmods), pred = num(pr$pred), se = num(pr$se), ci_lb = num(pr$ci.lb),
       ci_ub = num(pr$ci.ub), pi_lb = num(pr$pi.lb), pi_ub = num(pr$pi.ub))
}

newmods_for <- list(a16_mods = c(1, 0, 2.5), sim2_mods = c(0.5, 1))

robust_out <- function(rob) {
  list(se = num(rob$se), tval = num(rob$zval), ddf = num(rob$ddf), pval = num(rob$pval),
       ci_lb = num(rob$ci.lb), ci_ub = num(rob$ci.ub), QM = num(rob$QM), QMdf = num(rob$QMdf),
       QMp = num(rob$QMp), vb = unname(as.matrix(unclass(rob$vb))[seq_len(rob$p), seq_len(rob$p)]),
       n = rob$n)
}

fits <- list()
for (s in specs) {
  for (method in c("REML", "ML")) {
    for (td in list(c("z", "residual"), c("t", "residual"), c("t", "contain"))) {
      res <- fit_model(s, method, td[1], td[2])
      out <- c(list(id = s$id, data = s$data, random = s$random, mods = s$mods,
                    method = method, test = td[1], dfs = td[2]), fit_out(res))
      out$predict <- pred_out(res, newmods_for[[s$id]])
      fits[[length(fits) + 1]] <- out
    }
  }
}

# printed output (print.rma.mv) of three fits, for str(result)
printed <- list()
for (pc in list(list(id = "k11", method = "REML", test = "z", dfs = "residual"),
                list(id = "a16_mods", method = "REML", test = "t", dfs = "contain"),
                list(id = "sim4", method = "ML", test = "z", dfs = "residual"))) {
  s <- specs[[which(sapply(specs, function(x) x$id) == pc$id)]]
  res <- fit_model(s, pc$method, pc$test, pc$dfs)
  printed[[length(printed) + 1]] <- c(pc, list(text = paste(capture.output(print(res)),
                                                            collapse = "\n")))
}

# profile-likelihood CIs: metafor's default optimiser for the profile refits (a tighter one
# makes nlminb report false convergence there), root tolerance 1e-10 instead of 1.2e-4
confints <- list()
for (s in specs) {
  for (method in c("REML", "ML")) {
    res <- fit_model(s, method, "z", "residual", tight = FALSE)
    ci <- suppressWarnings(confint(res, control = list(tol = 1e-10)))
    ci <- if (length(res$sigma2) == 1) list(ci) else ci[seq_along(res$sigma2)]
    lb <- sapply(ci, function(x) x$random[1, "ci.lb"])
    ub <- sapply(ci, function(x) x$random[1, "ci.ub"])
    confints[[length(confints) + 1]] <- list(id = s$id, method = method, ci_lb = num(lb),
                                             ci_ub = num(ub), sigma2 = num(res$sigma2),
                                             ub_sign = sapply(ci, function(x) x$ub.sign),
                                             lb_sign = sapply(ci, function(x) x$lb.sign))
  }
}

# likelihood ratio tests: the full model against one without the outermost level
anovas <- list()
for (s in specs) {
  for (method in c("REML", "ML")) {
    full <- fit_model(s, method, "z", "residual")
    fixed <- c(0, rep(NA, length(s$random) - 1))
    red <- fit_model(s, method, "z", "residual", sigma2 = fixed)
    a <- anova(full, red)
    anovas[[length(anovas) + 1]] <- list(
      id = s$id, method = method, reduced_sigma2 = fixed, LRT = num(a$LRT), pval = num(a$pval),
      df_full = a$parms.f, df_reduced = a$parms.r, ll_full = num(a$fit.stats.f["ll"]),
      ll_reduced = num(a$fit.stats.r["ll"]), AIC_full = num(a$fit.stats.f["AIC"]),
      AIC_reduced = num(a$fit.stats.r["AIC"]), reduced_sigma2_est = num(red$sigma2))
  }
}

# cluster-robust inference: metafor's default and clubSandwich CR2
robusts <- list()
walds <- list()
for (s in specs) {
  dat <- datasets[[s$data]]
  cl <- dat[[s$cluster]]
  for (method in c("REML", "ML")) {
    res <- fit_model(s, method, "z", "residual")
    r1 <- robust(res, cluster = cl)
    r2 <- robust(res, cluster = cl, clubSandwich = TRUE)
    r0 <- robust(res, cluster = cl, adjust = FALSE)
    robusts[[length(robusts) + 1]] <- list(id = s$id, method = method, cluster = s$cluster,
                                           default = robust_out(r1), cr2 = robust_out(r2),
                                           cr0 = robust_out(r0))
    ct <- coef_test(res, vcov = "CR2", cluster = cl, test = "Satterthwaite")
    if (res$p >= 3) {
      for (cons in list(2:3, 2:res$p)) {
        w <- Wald_test(res, constraints = constrain_zero(cons), vcov = "CR2", cluster = cl,
                       test = "HTZ")
        walds[[length(walds) + 1]] <- list(
          id = s$id, method = method, coefs = cons - 1, Fstat = num(w$Fstat),
          delta = num(w$delta), df_num = num(w$df_num), df_denom = num(w$df_denom),
          p_val = num(w$p_val), coef_SE = num(ct$SE), coef_df = num(ct$df_Satt),
          coef_p = num(ct$p_Satt))
      }
    }
  }
}

# CHE working model: imputed block covariance, three-level model, CR2
ches <- list()
che_specs <- list(list(s = specs[[2]], mods = NULL), list(s = specs[[3]], mods = "deltype + year"),
                  list(s = specs[[4]], mods = NULL), list(s = specs[[5]], mods = "x + z"))
for (cs in che_specs) {
  s <- cs$s
  dat <- datasets[[s$data]]
  cl <- dat[[s$random[1]]]
  for (smooth in c(FALSE, TRUE)) {
    Vl <- impute_covariance_matrix(dat$vi, cluster = cl, r = 0.6, smooth_vi = smooth,
                                   return_list = TRUE)
    V <- impute_covariance_matrix(dat$vi, cluster = cl, r = 0.6, smooth_vi = smooth,
                                  return_list = FALSE)
    res <- fit_model(s, "REML", "z", "residual", V = V)
    rob <- robust(res, cluster = cl, clubSandwich = TRUE)
    ches[[length(ches) + 1]] <- c(
      list(id = s$id, data = s$data, random = s$random, mods = s$mods, r = 0.6,
           smooth_vi = smooth, V_blocks = lapply(unname(Vl), unname), cluster = s$random[1]),
      fit_out(res), list(cr2 = robust_out(rob), predict = pred_out(res, newmods_for[[s$id]])))
  }
}

out <- list(
  versions = list(metafor = as.character(packageVersion("metafor")),
                  clubSandwich = as.character(packageVersion("clubSandwich"))),
  data = lapply(datasets, as.list),
  fits = fits, confint = confints, anova = anovas, robust = robusts, wald = walds, che = ches,
  printed = printed
)
writeLines(toJSON(full_precision(out), auto_unbox = TRUE, null = "null", na = "null",
                  json_verbatim = TRUE), "tests/golden/rma_mv.json")
cat("wrote tests/golden/rma_mv.json:", length(fits), "fits,", length(confints), "confints,",
    length(anovas), "anovas,", length(robusts), "robust,", length(walds), "wald,",
    length(ches), "che\n")
