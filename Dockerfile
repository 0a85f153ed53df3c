# dhr-workflow daemon image. Build: docker build -t dhr-workflow .
# Run:   docker run -v dhr-data:/data -p 8080:8080 -e DHR_HTTP_HOST=0.0.0.0 \
#          -e DHR_BASE_URL=https://dhr.example.org dhr-workflow
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dhr_workflow ./dhr_workflow
COPY rules ./rules
COPY templates ./templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DHR_DATABASE_URL=sqlite:////data/dhr-workflow.db \
    DHR_MAIL_DIR=/data/mail \
    DHR_HTTP_PORT=8080
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin dhr \
    && mkdir -p /data && chown dhr:dhr /data && chmod 700 /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER dhr
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DHR_HTTP_PORT', '8080') + '/healthz', timeout=4)" || exit 1
# Create or upgrade the schema, then run the daemon (scheduler, sender, web app, feeds).
CMD ["sh", "-c", "dhr-workflow init && exec dhr-workflow run"]
