/*
 * The Java producer of the cluster fault bench (tests/cluster): Apache Kafka's own Java client
 * writing the same workload as the confluent-kafka producer of clients.py, into a history file of
 * the same format (history.py, docs/cluster-testing.md "The history"), with client "java".
 *
 * Idempotent (enable.idempotence=true, acks=all, always), unique values "<process>-<seq>", keys
 * "k<seq % 8>": an "invoke" line before each send(), then "ok" (partition, offset) or "info" (any
 * error: with retries the outcome is unknown) from the send callback. Runs until SIGTERM (or
 * --duration); the shutdown hook stops the sending loop, which then waits at most --drain-timeout
 * for outstanding records, closes the producer with a bounded timeout and prints
 * "NAME: acked=N info=M pending=K" to stderr.
 *
 * Usage (javaclient.py compiles this file and builds the command line):
 *   java -cp DIR:KAFKA_LIBS/* HistoryProducer --bootstrap B --topic T --process NAME
 *        --history FILE [--rate N[/s]] [--duration S] [--drain-timeout S] [-X key=value ...]
 *
 * Only the JDK and kafka-clients are used: the JSON lines are written by hand.
 */

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringSerializer;

public final class HistoryProducer {
    private static final String CLIENT = "java";
    private static final int KEY_COUNT = 8;
    /** Time given to KafkaProducer.close() after the drain; what is left is aborted. */
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(5);

    /** Appends JSON lines to the history file, one flushed line per op, thread-safely. */
    static final class History implements AutoCloseable {
        private final BufferedWriter out;
        private final String process;

        History(String path, String process) throws IOException {
            this.out = new BufferedWriter(new OutputStreamWriter(
                Files.newOutputStream(Paths.get(path), StandardOpenOption.CREATE, StandardOpenOption.APPEND),
                StandardCharsets.UTF_8));
            this.process = process;
        }

        /** Writes one op; fields values may be String, Number, Boolean or null. */
        synchronized void op(String type, String f, Map<String, Object> fields) {
            StringBuilder line = new StringBuilder(192);
            // Wall time in seconds (for people) and CLOCK_MONOTONIC in ns (for the checker):
            // System.nanoTime() reads CLOCK_MONOTONIC on Linux, like Python's monotonic_ns().
            line.append("{\"time\":").append(BigDecimal.valueOf(System.currentTimeMillis(), 3).toPlainString());
            line.append(",\"mono\":").append(System.nanoTime());
            line.append(",\"process\":"); quote(line, process);
            line.append(",\"client\":"); quote(line, CLIENT);
            line.append(",\"type\":"); quote(line, type);
            line.append(",\"f\":"); quote(line, f);
            for (Map.Entry<String, Object> field : fields.entrySet()) {
                line.append(','); quote(line, field.getKey()); line.append(':');
                Object value = field.getValue();
                if (value == null) {
                    line.append("null");
                } else if (value instanceof Number || value instanceof Boolean) {
                    line.append(value);
                } else {
                    quote(line, value.toString());
                }
            }
            line.append("}\n");
            try {
                out.write(line.toString());
                out.flush();
            } catch (IOException e) {
                System.err.println(process + ": cannot write history: " + e);
            }
        }

        @Override
        public synchronized void close() {
            try {
                out.close();
            } catch (IOException e) {
                System.err.println(process + ": cannot close history: " + e);
            }
        }

        /** A JSON string literal: quotes, backslashes and control characters escaped. */
        static void quote(StringBuilder sb, String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    case '\b': sb.append("\\b"); break;
                    case '\f': sb.append("\\f"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029') {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                }
            }
            sb.append('"');
        }
    }

    // -- options ---------------------------------------------------------------------------------

    private String bootstrap;
    private String topic = "jepsen";
    private String process;
    private String historyPath;
    private double rate = 50.0;
    private double durationS = -1;
    private double drainTimeoutS = 60.0;
    private final Map<String, String> extraProps = new LinkedHashMap<>();

    // -- state -----------------------------------------------------------------------------------

    private History history;
    private volatile boolean stopping = false;
    private volatile boolean exitingNormally = false;
    private volatile int exitCode = 0;
    private final CountDownLatch finished = new CountDownLatch(1);
    private final Set<String> pending = ConcurrentHashMap.newKeySet();
    private final AtomicLong acked = new AtomicLong();
    private final AtomicLong infos = new AtomicLong();

    private static void usage(String message) {
        System.err.println("HistoryProducer: " + message);
        System.err.println("usage: HistoryProducer --bootstrap B --topic T --process NAME --history FILE"
            + " [--rate N[/s]] [--duration S] [--drain-timeout S] [-X key=value ...]");
        System.exit(2);
    }

    private void parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + arg);
            }
            String value = args[++i];
            switch (arg) {
                case "--bootstrap": bootstrap = value; break;
                case "--topic": topic = value; break;
                case "--process": process = value; break;
                case "--history": historyPath = value; break;
                case "--rate": rate = Double.parseDouble(value.endsWith("/s") ? value.substring(0, value.length() - 2) : value); break;
                case "--duration": durationS = Double.parseDouble(value); break;
                case "--drain-timeout": drainTimeoutS = Double.parseDouble(value); break;
                case "-X": {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        usage("-X expects key=value, got " + value);
                    }
                    extraProps.put(value.substring(0, eq).trim(), value.substring(eq + 1));
                    break;
                }
                default: usage("unknown option " + arg);
            }
        }
        if (bootstrap == null || process == null || historyPath == null) {
            usage("--bootstrap, --process and --history are required");
        }
        if (!(rate > 0)) {
            usage("--rate must be positive");
        }
    }

    private Properties config() {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, process);
        // send() blocks at most this long for metadata or buffer space (default 60 s), so the
        // loop keeps its rate and notices SIGTERM while the cluster is unreachable.
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "5000");
        props.putAll(extraProps);
        for (String[] forced : new String[][] {{ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true"}, {ProducerConfig.ACKS_CONFIG, "all"}}) {
            Object given = props.get(forced[0]);
            if (given != null && !given.toString().equalsIgnoreCase(forced[1]) && !given.toString().equals("-1")) {
                System.err.println(process + ": ignoring -X " + forced[0] + "=" + given + ": the workload always uses " + forced[1]);
            }
            props.put(forced[0], forced[1]);
        }
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return props;
    }

    private static String describe(Throwable e) {
        String message = e.getMessage();
        return e.getClass().getSimpleName() + (message == null ? "" : ": " + message);
    }

    private static Map<String, Object> fields(Object... keyValues) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (int i = 0; i + 1 < keyValues.length; i += 2) {
            map.put((String) keyValues[i], keyValues[i + 1]);
        }
        return map;
    }

    private void complete(String value, RecordMetadata metadata, Exception error) {
        if (!pending.remove(value)) {
            return; // already completed (e.g. send() threw after also calling back)
        }
        if (error == null) {
            acked.incrementAndGet();
            // An ack can come without an offset (a retried batch the broker recognised as a
            // duplicate): null in the history, as the Python producer writes it.
            Object offset = metadata.hasOffset() ? (Object) metadata.offset() : null;
            history.op("ok", "send", fields("value", value, "partition", metadata.partition(), "offset", offset));
        } else {
            // Every error is "info": with idempotent retries a record reported as failed may
            // still have been written.
            infos.incrementAndGet();
            history.op("info", "send", fields("value", value, "error", describe(error)));
        }
    }

    private KafkaProducer<String, String> newProducer() {
        return new KafkaProducer<>(config());
    }

    private void closeQuietly(KafkaProducer<String, String> producer, Duration timeout) {
        try {
            producer.close(timeout);
        } catch (RuntimeException e) {
            System.err.println(process + ": close: " + describe(e));
        }
    }

    private void run() throws IOException, InterruptedException {
        history = new History(historyPath, process);
        KafkaProducer<String, String> producer = newProducer();
        long intervalNs = (long) (1e9 / rate);
        long started = System.nanoTime();
        long end = durationS > 0 ? started + (long) (durationS * 1e9) : Long.MAX_VALUE;
        long nextSend = started;
        for (long seq = 0; !stopping && System.nanoTime() < end; seq++) {
            String value = process + "-" + seq;
            String key = "k" + (seq % KEY_COUNT);
            history.op("invoke", "send", fields("topic", topic, "key", key, "value", value));
            pending.add(value);
            try {
                producer.send(new ProducerRecord<>(topic, key, value), (metadata, error) -> complete(value, metadata, error));
            } catch (TimeoutException e) {
                // Metadata or buffer space not available within max.block.ms: never sent.
                complete(value, null, e);
            } catch (KafkaException | IllegalStateException e) {
                // The producer is in a fatal state (e.g. an idempotence error it cannot
                // recover from) or closed: report, then continue with a new producer.
                complete(value, null, e);
                System.err.println(process + ": send failed (" + describe(e) + "): replacing the producer");
                closeQuietly(producer, CLOSE_TIMEOUT);
                producer = newProducer();
            }
            nextSend += intervalNs;
            long now = System.nanoTime();
            if (nextSend < now - 1_000_000_000L) {
                nextSend = now; // fell far behind (a long block in send()): don't burst
            }
            while (!stopping && (now = System.nanoTime()) < nextSend) {
                long waitNs = nextSend - now;
                Thread.sleep(waitNs / 1_000_000L, (int) (waitNs % 1_000_000L));
            }
        }
        drain(producer);
    }

    /** Waits (bounded) for the outcome of every record sent, then closes the producer. */
    private void drain(KafkaProducer<String, String> producer) throws InterruptedException {
        long deadline = System.nanoTime() + (long) (drainTimeoutS * 1e9);
        while (!pending.isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        long pendingAtDeadline = pending.size();
        long infosAtDeadline = infos.get();
        // close() aborts what is still outstanding after its timeout; those callbacks are
        // recorded as info (the records may have been written).
        closeQuietly(producer, pendingAtDeadline == 0 ? CLOSE_TIMEOUT : Duration.ZERO);
        System.err.println(process + ": acked=" + acked.get() + " info=" + infosAtDeadline + " pending=" + pendingAtDeadline);
        System.err.flush();
        history.close();
    }

    public static void main(String[] args) throws Exception {
        HistoryProducer self = new HistoryProducer();
        self.parse(args);
        long hookWaitS = (long) self.drainTimeoutS + CLOSE_TIMEOUT.getSeconds() + 10;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (self.exitingNormally) {
                return; // --duration elapsed and main() called System.exit: nothing to drain
            }
            // SIGTERM: ask the loop to stop, wait (bounded) for the drain, then end the JVM
            // with code 0 like the Python producer (the signal's own code would be 143).
            self.stopping = true;
            try {
                if (!self.finished.await(hookWaitS, TimeUnit.SECONDS)) {
                    System.err.println(self.process + ": drain did not finish within " + hookWaitS + "s");
                    Runtime.getRuntime().halt(3);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            Runtime.getRuntime().halt(self.exitCode);
        }, "history-producer-shutdown"));
        try {
            self.run();
        } catch (Throwable e) {
            System.err.println(self.process + ": crashed: " + describe(e));
            e.printStackTrace();
            self.exitCode = 2;
        } finally {
            self.finished.countDown();
        }
        if (!self.stopping) {
            self.exitingNormally = true;
            System.exit(self.exitCode);
        }
        // Stopping on a signal: the JVM is already shutting down and the hook halts it.
        Thread.sleep(Long.MAX_VALUE);
    }

    private HistoryProducer() {
    }
}
