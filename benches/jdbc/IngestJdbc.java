// Ignition-style historian ingest through PgJDBC: N connections, each sending batches of
// prepared INSERTs (executeBatch) inside transactions, one commit per batch.
//
// java -cp /usr/share/java/postgresql.jar IngestJdbc.java <jdbc-url> <user> <password> <table> <rows> <connections> <batch>
// Prints "rows=<n> millis=<elapsed>".
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class IngestJdbc {
    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], password = args[2], table = args[3];
        long rows = Long.parseLong(args[4]);
        int connections = Integer.parseInt(args[5]);
        int batch = Integer.parseInt(args[6]);
        long perConnection = rows / connections;
        ExecutorService pool = Executors.newFixedThreadPool(connections);
        List<Future<Long>> done = new ArrayList<>();
        long started = System.nanoTime();
        for (int c = 0; c < connections; c++) {
            final int conn = c;
            done.add(pool.submit(() -> load(url, user, password, table, conn, perConnection, batch)));
        }
        long total = 0;
        try {
            for (Future<Long> f : done) total += f.get();
        } finally {
            // A failed connection must end the program, not leave the others' threads waiting.
            pool.shutdownNow();
        }
        long millis = (System.nanoTime() - started) / 1_000_000;
        System.out.println("rows=" + total + " millis=" + millis);
    }

    // Connection c owns tags c*1000+1 .. c*1000+1000; each "scan" stores every tag once at one
    // t_stamp, one second apart, like a tag group's history.
    static long load(String url, String user, String password, String table, int c, long rows, int batch) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        try (Connection conn = DriverManager.getConnection(url, props)) {
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + table
                    + " (tagid, intvalue, floatvalue, stringvalue, datevalue, dataintegrity, t_stamp) VALUES (?, ?, ?, ?, ?, ?, ?)")) {
                long stored = 0;
                for (long i = 0; i < rows; i++) {
                    int tag = c * 1000 + (int) (i % 1000) + 1;
                    long tStamp = 1_793_491_200_000L + (i / 1000) * 1000;
                    ps.setInt(1, tag);
                    ps.setNull(2, Types.BIGINT);
                    ps.setDouble(3, (i % 977) * 0.125);
                    ps.setNull(4, Types.VARCHAR);
                    ps.setNull(5, Types.TIMESTAMP);
                    ps.setInt(6, 192);
                    ps.setLong(7, tStamp);
                    ps.addBatch();
                    if ((i + 1) % batch == 0 || i + 1 == rows) {
                        ps.executeBatch();
                        conn.commit();
                    }
                    stored++;
                }
                return stored;
            }
        }
    }
}
