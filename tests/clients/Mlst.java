// Apache Commons Net (Debian libcommons-net-java) over explicit FTPS, as a
// partner's Java integration uses it: mlistFile of a name relative to the
// working directory, then of an absolute path, then a listing.
// Run: java -cp /usr/share/java/commons-net.jar Mlst.java PORT USER PASSWORD
import org.apache.commons.net.ftp.FTPFile;
import org.apache.commons.net.ftp.FTPSClient;
import org.apache.commons.net.util.TrustManagerUtils;

public class Mlst {
    public static void main(String[] args) throws Exception {
        FTPSClient ftp = new FTPSClient(false);
        ftp.setTrustManager(TrustManagerUtils.getAcceptAllTrustManager());
        ftp.connect("127.0.0.1", Integer.parseInt(args[0]));
        if (!ftp.login(args[1], args[2])) throw new Exception("login: " + ftp.getReplyString());
        ftp.execPBSZ(0);
        ftp.execPROT("P");
        ftp.enterLocalPassiveMode();
        if (!ftp.changeWorkingDirectory("/in")) throw new Exception("cwd: " + ftp.getReplyString());
        FTPFile relative = ftp.mlistFile("big.bin");
        System.out.println("relative " + (relative == null ? "null " + ftp.getReplyString().trim() : relative.getSize()));
        FTPFile absolute = ftp.mlistFile("/in/big.bin");
        System.out.println("absolute " + (absolute == null ? "null" : absolute.getSize()));
        for (FTPFile f : ftp.mlistDir()) System.out.println("entry " + f.getName() + " " + f.getSize());
        ftp.logout();
        ftp.disconnect();
    }
}
