# Golden values for evidence.stats.che: metapsyTools' "threelevel.che" and "threelevel" recipes
# (runMetaAnalysis with its defaults), rebuilt here with metafor + clubSandwich directly, since
# metapsyTools is not installed. Run from the repository root:  Rscript tests/golden/che.R
# Writes tests/golden/che.json (17 significant digits). metafor 3.8-1, clubSandwich 0.5.8.
#
# The recipe, as read in metapsyTools 1.0.14 (github metapsy-project/metapsyTools, commit
# 03b74cc, R/utils.R: fitThreeLevelCHEModel and fitThreeLevelModel; R/runMetaAnalysis.R for
# the defaults rho.within.study = 0.6, hakn = TRUE, use.rve = TRUE, vcov = "simple"):
#   data sorted by study; es.id = 1..k
#   threelevel.che: V = impute_covariance_matrix(vi, cluster = study, r = 0.6, smooth_vi = TRUE)
#                   rma.mv(yi ~ 1, V, random = ~ 1 | study/es.id, test = "t", method = "REML",
#                          sparse = TRUE)
#   threelevel:     rma.mv(yi, vi, random = ~ 1 | study/es.id, test = "t", method = "REML")
#   both (use.rve): estimate, SE, CI from clubSandwich::conf_int(m, "CR2") (Satterthwaite),
#                   p from coef_test(m, "CR2")$p_Satt (cluster: the outermost level, study);
#                   I2 = 100 sum(sigma2) / (sum(sigma2) + (k - p) / tr(P)), P from
#                   W = diag(1 / vi) (the reported vi, not V); per level sigma2_l likewise;
#                   prediction interval b +- qt(0.975, m$ddf[1]) sqrt(sum(sigma2) + SE^2),
#                   m$ddf[1] = k - p (the model's t test, not the Satterthwaite df).
suppressMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})

num <- function(x) if (is.null(x)) NULL else unname(as.numeric(x))
fmt17 <- function(v) ifelse(is.finite(v), sprintf("%.17g", v), "null")
full_precision <- function(x) {
  if (is.list(x)) {
    y <- lapply(x, full_precision)
    names(y) <- names(x)
    return(y)
  }
  if (!is.double(x)) return(x)
  if (length(x) == 1 && !inherits(x, "AsIs")) return(structure(fmt17(x), class = "json"))
  structure(paste0("[", paste(fmt17(x), collapse = ","), "]"), class = "json")
}

datasets <- list(
  assink2016 = data.frame(study = dat.assink2016$study, es_id = dat.assink2016$esid,
                          yi = dat.assink2016$yi, vi = dat.assink2016$vi,
                          deltype = dat.assink2016$deltype),
  konstantopoulos2011 = data.frame(study = dat.konstantopoulos2011$district,
                                   es_id = dat.konstantopoulos2011$school,
                                   yi = dat.konstantopoulos2011$yi,
                                   vi = dat.konstantopoulos2011$vi)
)

# metafor's default optimiser stops up to ~1e-6 (relative) short of the REML optimum; keep the
# best of the default and three tighter optimisers (as rma_mv.R) so the values are the optimum.
tight_controls <- list(list(rel.tol = 1e-12),
                       list(optimizer = "nlm", gradtol = 1e-12, steptol = 1e-14),
                       list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15))
best_fit <- function(args) {
  best <- do.call(rma.mv, args)
  for (ctrl in tight_controls) {
    res <- try(do.call(rma.mv, c(args, list(control = ctrl))), silent = TRUE)
    if (!inherits(res, "try-error") && logLik(res) > logLik(best)) best <- res
  }
  best
}

i2_metapsy <- function(m, vi) {
  W <- diag(1 / vi)
  X <- model.matrix(m)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  den <- sum(m$sigma2) + (m$k - m$p) / sum(diag(P))
  list(I2 = 100 * sum(m$sigma2) / den, I2_levels = num(100 * m$sigma2 / den))
}

run_case <- function(id, data, model, rho = 0.6, smooth = TRUE, mods = NULL) {
  d <- datasets[[data]]
  d <- d[order(d$study), ]  # runMetaAnalysis sorts by study
  d$es.id <- seq_len(nrow(d))
  fixed <- as.formula(paste("yi ~", if (is.null(mods)) "1" else mods))
  if (model == "che") {
    V <- impute_covariance_matrix(d$vi, cluster = d$study, r = rho, smooth_vi = smooth)
    args <- list(fixed, V = V, data = d, random = ~ 1 | study / es.id, test = "t",
                 method = "REML", sparse = TRUE)
  } else {
    args <- list(fixed, V = d$vi, data = d, random = ~ 1 | study / es.id, test = "t",
                 method = "REML")
  }
  m <- best_fit(args)
  ci <- conf_int(m, vcov = "CR2")
  ct <- coef_test(m, vcov = "CR2")
  rob <- robust(m, cluster = d$study, clubSandwich = TRUE)
  prob <- if (is.null(mods)) predict(rob) else list(pi.lb = NULL, pi.ub = NULL)
  i2 <- i2_metapsy(m, d$vi)
  crit <- qt(0.025, m$ddf[[1]], lower.tail = FALSE)
  pi <- if (is.null(mods)) {
    c(num(ci$beta) - crit * sqrt(sum(m$sigma2) + num(ci$SE)^2),
      num(ci$beta) + crit * sqrt(sum(m$sigma2) + num(ci$SE)^2))
  } else NULL
  list(id = id, data = data, model = model, rho = if (model == "che") rho else NULL,
       smooth_vi = if (model == "che") smooth else NULL, mods = mods,
       study = d$study, es_id = d$es_id, yi = d$yi, vi = d$vi,
       deltype = if (is.null(mods)) NULL else as.character(d$deltype),
       k = m$k, p = m$p, names = rownames(m$beta), beta = num(m$beta),
       sigma2 = num(m$sigma2), model_se = num(m$se), model_ddf = num(m$ddf),
       logLik_REML = num(logLik(m)),
       cr2 = list(se = num(ci$SE), df = num(ci$df), ci_lb = num(ci$CI_L), ci_ub = num(ci$CI_U),
                  tstat = num(ct$tstat), pval = num(ct$p_Satt)),
       I2 = i2$I2, I2_levels = i2$I2_levels, pi = pi,
       metafor_robust = list(se = num(rob$se), ddf = num(rob$ddf), pval = num(rob$pval),
                             ci_lb = num(rob$ci.lb), ci_ub = num(rob$ci.ub),
                             pi_lb = num(prob$pi.lb), pi_ub = num(prob$pi.ub)))
}

cases <- list(
  run_case("a16_che", "assink2016", "che"),
  run_case("a16_che_raw", "assink2016", "che", smooth = FALSE),
  run_case("a16_che_rho08", "assink2016", "che", rho = 0.8),
  run_case("a16_che_mods", "assink2016", "che", mods = "deltype"),
  run_case("a16_threelevel", "assink2016", "threelevel"),
  run_case("k11_che", "konstantopoulos2011", "che"),
  run_case("k11_che_raw", "konstantopoulos2011", "che", smooth = FALSE),
  run_case("k11_threelevel", "konstantopoulos2011", "threelevel")
)

out <- list(
  versions = list(metafor = as.character(packageVersion("metafor")),
                  clubSandwich = as.character(packageVersion("clubSandwich")),
                  metapsyTools_read = "1.0.14 (03b74cc4d1c21f9320427a5e9f4c6f155afdee14)"),
  cases = cases
)
writeLines(toJSON(full_precision(out), auto_unbox = TRUE, null = "null", na = "null",
                  json_verbatim = TRUE), "tests/golden/che.json")
cat("wrote tests/golden/che.json:", length(cases), "cases\n")
